package registry

import (
	"errors"
	"testing"

	"github.com/voxscriber/webhooks/pkg/apierr"
)

func field(err error) string {
	var inv *apierr.InvalidError
	if errors.As(err, &inv) {
		return inv.Field
	}
	return "<" + errors.Unwrap(err).Error() + ">"
}

func TestValidateHeaders(t *testing.T) {
	for _, tc := range []struct {
		h     map[string]string
		field string
	}{
		{map[string]string{"X-Ok": "1", "Authorization": "Bearer x"}, ""},
		{map[string]string{"x-webhook-attempt": "1"}, `headers["x-webhook-attempt"]`},
		{map[string]string{"TRACESTATE": "1"}, `headers["TRACESTATE"]`},
		{map[string]string{"Content-Length": "1"}, `headers["Content-Length"]`},
		{map[string]string{"X-A": "a\nb"}, `headers["X-A"]`},
		{map[string]string{"X-A": "1", "x-a": "2"}, `headers["x-a"]`},
		{map[string]string{"X(A)": "1"}, `headers["X(A)"]`},
		{map[string]string{"": "1"}, "headers"},
	} {
		err := validateHeaders(tc.h)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.h, err)
			}
			continue
		}
		if err == nil || field(err) != tc.field {
			t.Errorf("%v: got %v, want an error on %s", tc.h, err, tc.field)
		}
	}
}

func TestValidateEventTypes(t *testing.T) {
	for _, tc := range []struct {
		types []string
		field string
	}{
		{[]string{"transcription.*", "credits.low", "*"}, ""},
		{nil, "event_types"},
		{[]string{"credits.*", "credits.*"}, "event_types[1]"},
		{[]string{"nope.*"}, "event_types[0]"},
		{[]string{"*.*"}, "event_types[0]"},
		{[]string{"transcription"}, "event_types[0]"},
	} {
		err := validateEventTypes(tc.types)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.types, err)
			}
			continue
		}
		if err == nil || field(err) != tc.field {
			t.Errorf("%v: got %v, want an error on %s", tc.types, err, tc.field)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := Cursor{CreateMillis: 1767225600123, ID: "ep_01KDWTD5KV7QXWQ4M1Z0S9B7XC"}
	got, ok := decodeCursor(encodeCursor(c))
	if !ok || got != c {
		t.Fatalf("got %v %v", got, ok)
	}
}
