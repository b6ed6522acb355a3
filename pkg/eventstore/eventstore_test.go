package eventstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

func TestPayloadMany(t *testing.T) {
	srv := redistest.Start(t)
	s := New(srv.Client, time.Hour)
	ctx := context.Background()
	evs := []*Event{
		{ID: "evt_a", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{"a":1}`), CreateTime: time.Now()},
		{ID: "evt_b", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{"b":2}`), CreateTime: time.Now()},
	}
	if err := s.PutMany(ctx, evs); err != nil {
		t.Fatal(err)
	}
	got, errs := s.PayloadMany(ctx, []string{"evt_b", "evt_missing", "evt_a"})
	if string(got[0]) != `{"b":2}` || errs[0] != nil || string(got[2]) != `{"a":1}` || errs[2] != nil {
		t.Errorf("found: %q %v, %q %v", got[0], errs[0], got[2], errs[2])
	}
	if got[1] != nil || !errors.Is(errs[1], apierr.ErrNotFound) {
		t.Errorf("missing: %q, %v; want NotFound", got[1], errs[1])
	}
	srv.Stop()
	if _, errs := s.PayloadMany(ctx, []string{"evt_a"}); errs[0] == nil {
		t.Error("no error with Redis stopped")
	}
}
