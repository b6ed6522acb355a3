package ids

import (
	"sort"
	"testing"
	"time"
)

func TestNewIsTimeOrderedAndValid(t *testing.T) {
	base := time.Date(2026, 11, 26, 19, 43, 16, 123e6, time.UTC)
	var got []string
	for i := 0; i < 100; i++ {
		id := New(Event, base.Add(time.Duration(i)*time.Millisecond))
		if !Valid(Event, id) {
			t.Fatalf("invalid id %s", id)
		}
		got = append(got, id)
	}
	if !sort.StringsAreSorted(got) {
		t.Fatal("ids do not sort by time")
	}
	if ts, ok := Time(got[0]); !ok || !ts.Equal(base) {
		t.Fatalf("Time = %v %v, want %v", ts, ok, base)
	}
}

func TestDeriveIsDeterministic(t *testing.T) {
	parent := New(Event, time.Now())
	a := Derive(Delivery, parent, "ep_1")
	if a != Derive(Delivery, parent, "ep_1") {
		t.Fatal("Derive is not deterministic")
	}
	if a == Derive(Delivery, parent, "ep_2") {
		t.Fatal("Derive ignores its parts")
	}
	if !Valid(Delivery, a) {
		t.Fatalf("derived id %s invalid", a)
	}
	pt, _ := Time(parent)
	if dt, ok := Time(a); !ok || !dt.Equal(pt) {
		t.Fatalf("derived time %v, parent %v", dt, pt)
	}
}

func TestValid(t *testing.T) {
	for _, bad := range []string{"", "evt_", "evt_123", "ep_01JDQ7Z6Y1V8M2K3N4P5Q6R7S8", "evt_01JDQ7Z6Y1V8M2K3N4P5Q6R7SU", "evt_81JDQ7Z6Y1V8M2K3N4P5Q6R7S8"} {
		if Valid(Event, bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
	if !Valid(Event, "evt_01JDQ7Z6Y1V8M2K3N4P5Q6R7S8") {
		t.Error("a well-formed id is refused")
	}
}

func TestBytesRoundTrip(t *testing.T) {
	for _, id := range []string{New(Event, time.Now()), Derive(Event, New(Event, time.Now()), "x"), "evt_7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "evt_00000000000000000000000000"} {
		b, ok := Bytes(Event, id)
		if !ok || FromBytes(Event, b) != id {
			t.Errorf("%s: %x %v -> %s", id, b, ok, FromBytes(Event, b))
		}
	}
	for _, bad := range []string{"evt_8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "ep_01K00000000000000000000000", "evt_short"} {
		if _, ok := Bytes(Event, bad); ok {
			t.Errorf("%s accepted", bad)
		}
	}
}
