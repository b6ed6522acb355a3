package grpcapi_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// Group commit: concurrent PublishEvent calls share their writes, and each
// caller still gets its own answer. The tests hold delivery's Schedule so
// that the calls made meanwhile gather into one group for certain.

type answer struct {
	resp *ingestionv1.PublishEventResponse
	err  error
}

// gathered makes sure the next calls gather: it holds Schedule, publishes
// one event per sender (each goes out alone and waits in Schedule) and
// returns the release and the blockers' answers (read after release).
func gathered(t *testing.T, e *env, acct string) (release func(), blockers <-chan answer) {
	t.Helper()
	release = e.dlv.holdSchedule()
	t.Cleanup(release)
	out := make(chan answer, 2)
	// One blocker at a time: two calls made at once may gather into one
	// group (one Schedule call), so the second starts once the first is
	// held in Schedule and takes the other sender.
	for i := range 2 {
		go func() {
			resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
				AccountId: acct, Type: "transcription.started", IdempotencyKey: fmt.Sprintf("blocker-%d", i),
				Data: sample(t, "transcription.started", "uploadId", fmt.Sprintf("upl_b%d", i)),
			})
			out <- answer{resp, err}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for e.dlv.held.Load() < int32(i+1) {
			if time.Now().After(deadline) {
				t.Fatalf("%d Schedule calls held, want %d", e.dlv.held.Load(), i+1)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return release, out
}

// publishTogether starts every request at once and returns their answers
// after release; it gives the calls time to reach the group first.
func publishTogether(t *testing.T, e *env, release func(), reqs []*ingestionv1.PublishEventRequest) []answer {
	t.Helper()
	out := make([]answer, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].resp, out[i].err = e.client.PublishEvent(t.Context(), r)
		}()
	}
	time.Sleep(300 * time.Millisecond) // every call validated and waiting for a sender
	release()
	wg.Wait()
	return out
}

func TestConcurrentSinglePublishesEachGetTheirOwnAnswer(t *testing.T) {
	e := newEnv(t, options{})
	acctA, _ := e.customer(t)
	acctB, _ := e.customer(t)
	e.reg.Subscribe(acctA, "transcription.started", "ep_a")
	e.reg.Subscribe(acctB, "transcription.started", "ep_b")
	started := func(acct string, n int) *ingestionv1.PublishEventRequest {
		return &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.started",
			Data: sample(t, "transcription.started", "uploadId", fmt.Sprintf("upl_%d", n))}
	}
	// An event of account A under a producer-chosen id, acknowledged
	// before the group: B may not reuse the id, A's repeat is a duplicate.
	stored := ids.New(ids.Event, time.Now())
	first := started(acctA, 0)
	first.Id = stored
	if _, err := e.client.PublishEvent(t.Context(), first); err != nil {
		t.Fatal(err)
	}

	release, blockers := gathered(t, e, acctA)
	var reqs []*ingestionv1.PublishEventRequest
	kind := map[int]string{}
	add := func(k string, r *ingestionv1.PublishEventRequest) {
		kind[len(reqs)] = k
		reqs = append(reqs, r)
	}
	for i := range 40 {
		add("new", started(acctA, 100+i))
	}
	for i := range 10 {
		r := started(acctA, 200+i)
		r.Data = sample(t, "transcription.started", "engine", deleted)
		add("invalid", r)
	}
	for k := range 3 {
		for range 5 {
			r := started(acctA, 300+k)
			r.IdempotencyKey = fmt.Sprintf("job-%d", k)
			add(fmt.Sprintf("key-%d", k), r)
		}
	}
	chosen := ids.New(ids.Event, time.Now())
	for range 4 {
		r := started(acctA, 400)
		r.Id = chosen
		add("chosen-A", r)
	}
	r := started(acctB, 401)
	r.Id = chosen
	add("chosen-B", r)
	r = started(acctB, 402)
	r.Id = stored
	add("stored-B", r)
	r = started(acctA, 0)
	r.Id = stored
	add("stored-A", r)

	answers := publishTogether(t, e, release, reqs)
	for range 2 {
		if a := <-blockers; a.err != nil {
			t.Fatalf("blocker: %v", a.err)
		}
	}

	newIDs := map[string]bool{}
	byKey := map[string][]answer{}
	for i, a := range answers {
		switch k := kind[i]; {
		case k == "new":
			if a.err != nil || a.resp.GetDuplicate() || newIDs[a.resp.GetEvent().GetId()] {
				t.Errorf("new event %d: %v duplicate=%v", i, a.err, a.resp.GetDuplicate())
				continue
			}
			newIDs[a.resp.GetEvent().GetId()] = true
		case k == "invalid":
			grpctest.CheckCode(t, a.err, codes.InvalidArgument, "engine")
		case k == "stored-B":
			grpctest.CheckCode(t, a.err, codes.AlreadyExists, "another account")
		case k == "stored-A":
			if a.err != nil || !a.resp.GetDuplicate() || a.resp.GetEvent().GetId() != stored {
				t.Errorf("repeat of the stored id: %v %v", a.err, a.resp)
			}
		default:
			byKey[k] = append(byKey[k], a)
		}
	}
	// Repeats of one key: one original, the others its duplicates.
	for k := range 3 {
		as := byKey[fmt.Sprintf("key-%d", k)]
		originals := 0
		for _, a := range as {
			if a.err != nil || a.resp.GetEvent().GetId() != as[0].resp.GetEvent().GetId() {
				t.Fatalf("key %d: %v, ids differ", k, a.err)
			}
			if !a.resp.GetDuplicate() {
				originals++
			}
		}
		if originals != 1 {
			t.Errorf("key %d: %d originals, want 1", k, originals)
		}
		newIDs[as[0].resp.GetEvent().GetId()] = true
	}
	// The id both accounts chose in the same group belongs to the first
	// of them in the group; the other account's calls get AlreadyExists.
	aOK, aRefused := 0, 0
	for _, a := range byKey["chosen-A"] {
		switch {
		case a.err == nil && a.resp.GetEvent().GetId() == chosen:
			aOK++
		default:
			grpctest.CheckCode(t, a.err, codes.AlreadyExists, "another account")
			aRefused++
		}
	}
	b := byKey["chosen-B"][0]
	switch {
	case aOK == 4 && b.err != nil:
		grpctest.CheckCode(t, b.err, codes.AlreadyExists, "another account")
	case aRefused == 4 && b.err == nil && b.resp.GetEvent().GetId() == chosen:
	default:
		t.Errorf("id chosen by both accounts: A %d ok %d refused, B %v", aOK, aRefused, b.err)
	}
	newIDs[chosen] = true

	// Stored once each: the event published first, the blockers, the new
	// events, one per key and the chosen id. Nothing of the invalid ones.
	if got, want := len(e.eventKeys(t)), 1+2+len(newIDs); got != want {
		t.Errorf("%d events stored, want %d", got, want)
	}
	// Shared: the storm's events went out in a few Schedule calls (one per
	// account of each group), each delivery scheduled once and carrying the
	// trace of its own publish call.
	calls := e.dlv.calls()
	if len(calls) > 2+1+6 {
		t.Errorf("%d Schedule calls for %d publishes: not grouped", len(calls), len(reqs))
	}
	scheduled := map[string]bool{}
	traces := map[string]bool{}
	for _, it := range e.dlv.items {
		if scheduled[it.GetEventId()] {
			t.Errorf("event %s scheduled twice", it.GetEventId())
		}
		scheduled[it.GetEventId()] = true
		tp := strings.Split(it.GetTraceParent(), "-")
		if len(tp) != 4 || traces[tp[1]] {
			t.Errorf("item %v: traceparent missing or shared with another publish", it)
			continue
		}
		traces[tp[1]] = true
	}
	for id := range newIDs {
		if !scheduled[id] {
			t.Errorf("event %s was never scheduled", id)
		}
	}
}

func TestRedisFailureDuringASharedWriteAcknowledgesNone(t *testing.T) {
	e := newEnv(t, options{})
	acct, _ := e.customer(t)
	e.reg.Subscribe(acct, "transcription.started", "ep_a")
	release, blockers := gathered(t, e, acct)
	var reqs []*ingestionv1.PublishEventRequest
	for i := range 30 {
		reqs = append(reqs, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.started",
			IdempotencyKey: fmt.Sprintf("k-%d", i),
			Data:           sample(t, "transcription.started", "uploadId", fmt.Sprintf("upl_%d", i))})
	}
	// The blockers stored their events and wait in Schedule; the 30 wait
	// for a sender. Redis goes away before either group writes again.
	release2 := func() { e.redis.Stop(); release() }
	answers := publishTogether(t, e, release2, reqs)
	for range 2 {
		a := <-blockers
		grpctest.CheckCode(t, a.err, codes.Unavailable)
	}
	for i, a := range answers {
		if !grpctest.CheckCode(t, a.err, codes.Unavailable) {
			t.Errorf("publish %d acknowledged while Redis was down", i)
		}
	}
	// The producers' retries with their keys finish the work, once each.
	e.redis.Restart()
	seen := map[string]bool{}
	for i, r := range reqs {
		resp, err := e.client.PublishEvent(t.Context(), r)
		if err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
		if seen[resp.GetEvent().GetId()] {
			t.Errorf("retry %d: id %s twice", i, resp.GetEvent().GetId())
		}
		seen[resp.GetEvent().GetId()] = true
	}
}

func TestCallerWhoseContextEndsGetsItsErrorAndTheGroupGoesOn(t *testing.T) {
	e := newEnv(t, options{})
	acct, _ := e.customer(t)
	e.reg.Subscribe(acct, "transcription.started", "ep_a")
	release, blockers := gathered(t, e, acct)
	req := &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.started",
		IdempotencyKey: "impatient", Data: sample(t, "transcription.started")}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := e.client.PublishEvent(ctx, req)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("impatient caller: %v, want DeadlineExceeded", err)
	}
	release()
	for range 2 {
		if a := <-blockers; a.err != nil {
			t.Fatal(a.err)
		}
	}
	// Its group went on: the event is stored and scheduled; a retry with
	// the key gets it as a duplicate.
	var resp *ingestionv1.PublishEventResponse
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err = e.client.PublishEvent(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDuplicate() || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !resp.GetDuplicate() || resp.GetEvent().GetDeliveryCount() != 1 {
		t.Errorf("retry after the deadline: %v duplicate=%v", resp.GetEvent(), resp.GetDuplicate())
	}
}
