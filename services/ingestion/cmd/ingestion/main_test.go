package main

import (
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/config"
)

// TestIngestionReadsAndChecksIdempotencyWindow: IDEMPOTENCY_WINDOW is read
// (default 24h); a value that is not a positive duration, or one longer
// than HISTORY_RETENTION (a repeat must still find its original), stops
// start-up with a message naming the variable.
func TestIngestionReadsAndChecksIdempotencyWindow(t *testing.T) {
	dev := map[string]string{"DEV_MODE": "true"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range dev {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	s, err := readSettings(config.FromMap(with()))
	if err != nil || s.idemWindow != 24*time.Hour {
		t.Fatalf("default: %v, %v; want 24h", s.idemWindow, err)
	}
	s, err = readSettings(config.FromMap(with("IDEMPOTENCY_WINDOW", "90m")))
	if err != nil || s.idemWindow != 90*time.Minute {
		t.Fatalf("90m: %v, %v", s.idemWindow, err)
	}
	for _, c := range []struct {
		env  map[string]string
		name []string // every variable the message must name
	}{
		{with("IDEMPOTENCY_WINDOW", "0s"), []string{"IDEMPOTENCY_WINDOW", "positive"}},
		{with("IDEMPOTENCY_WINDOW", "-1h"), []string{"IDEMPOTENCY_WINDOW", "positive"}},
		{with("IDEMPOTENCY_WINDOW", "a day"), []string{"IDEMPOTENCY_WINDOW", "positive"}},
		{with("IDEMPOTENCY_WINDOW", "800h"), []string{"IDEMPOTENCY_WINDOW", "HISTORY_RETENTION"}},
		{with("IDEMPOTENCY_WINDOW", "48h", "HISTORY_RETENTION", "24h"), []string{"IDEMPOTENCY_WINDOW", "HISTORY_RETENTION"}},
	} {
		_, err := readSettings(config.FromMap(c.env))
		if err == nil {
			t.Errorf("%v: accepted", c.env)
			continue
		}
		for _, n := range c.name {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("%v: message %q does not say %s", c.env, err, n)
			}
		}
	}
}
