package grpcapi_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// holdFirst holds the first call that passes it until release is closed,
// so that other calls run to their end inside the window it sits in: the
// race of two publishes, made certain instead of likely.
type holdFirst struct {
	once    sync.Once
	held    chan struct{} // closed once the first call is held
	release chan struct{}
}

func newHoldFirst() *holdFirst {
	return &holdFirst{held: make(chan struct{}), release: make(chan struct{})}
}

func (h *holdFirst) pass(ctx context.Context) {
	first := false
	h.once.Do(func() { first = true })
	if !first {
		return
	}
	close(h.held)
	select {
	case <-h.release:
	case <-ctx.Done():
	}
}

// claimThenHold is the real index; the first Claim is held after it
// claimed, before its caller stores anything.
type claimThenHold struct {
	ingest.Index
	h *holdFirst
}

func (c claimThenHold) Claim(ctx context.Context, cs []ingest.Claim) ([]ingest.KeyOwner, error) {
	owners, err := c.Index.Claim(ctx, cs)
	c.h.pass(ctx)
	return owners, err
}

// getThenHold is the real store; the first Get is held after it found
// nothing (or something), before its caller stores anything.
type getThenHold struct {
	ingest.EventStore
	h *holdFirst
}

func (g getThenHold) Get(ctx context.Context, id string) (*eventstore.Event, error) {
	e, err := g.EventStore.Get(ctx, id)
	g.h.pass(ctx)
	return e, err
}

// TestConcurrentPublishesOfOneKeyOrIDAreOneEvent: many publishes of one
// idempotency key, or of one producer-chosen id (also from two accounts),
// each with its own data, at once: one publish is held between its
// idempotency check and its write while all the others run to their end.
// Exactly one event is stored, with one body; every caller of its account
// gets that event (its id and its stored body); a caller of another account
// is refused (AlreadyExists naming the id) and overwrites nothing; the
// deliveries scheduled are those of that one event; the event is visible
// and marked fanned out.
func TestConcurrentPublishesOfOneKeyOrIDAreOneEvent(t *testing.T) {
	const callers = 24
	type publishFunc func(i int) *ingestionv1.PublishEventRequest
	cases := []struct {
		name string
		// holdAfterGet holds the first read of an original (a publish
		// naming an id reads it); otherwise the first key claim is held.
		holdAfterGet bool
		twoAccounts  bool
		req          func(t *testing.T, accts []string, id string) publishFunc
	}{
		{
			name: "same idempotency key",
			req: func(t *testing.T, accts []string, _ string) publishFunc {
				return func(i int) *ingestionv1.PublishEventRequest {
					return &ingestionv1.PublishEventRequest{
						AccountId: accts[0], Type: "transcription.progress", IdempotencyKey: "upl_7/progress",
						Data: sample(t, "transcription.progress", "percentage", float64(i)),
					}
				}
			},
		},
		{
			name: "same producer-chosen id", holdAfterGet: true,
			req: func(t *testing.T, accts []string, id string) publishFunc {
				return func(i int) *ingestionv1.PublishEventRequest {
					return &ingestionv1.PublishEventRequest{
						AccountId: accts[0], Id: id, Type: "transcription.progress",
						Data: sample(t, "transcription.progress", "percentage", float64(i)),
					}
				}
			},
		},
		{
			name: "same producer-chosen id from two accounts", holdAfterGet: true, twoAccounts: true,
			req: func(t *testing.T, accts []string, id string) publishFunc {
				return func(i int) *ingestionv1.PublishEventRequest {
					return &ingestionv1.PublishEventRequest{
						AccountId: accts[i%2], Id: id, Type: "transcription.progress",
						Data: sample(t, "transcription.progress", "percentage", float64(i)),
					}
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHoldFirst()
			o := options{wrapIndex: func(x ingest.Index) ingest.Index { return claimThenHold{x, h} }}
			if tc.holdAfterGet {
				o = options{wrapStore: func(s ingest.EventStore) ingest.EventStore { return getThenHold{s, h} }}
			}
			e := newEnv(t, o)
			acctA, ctxA := e.customer(t)
			acctB, ctxB := e.customer(t)
			accts, custCtx := []string{acctA}, map[string]context.Context{acctA: ctxA}
			if tc.twoAccounts {
				accts, custCtx[acctB] = append(accts, acctB), ctxB
			}
			for _, a := range accts {
				e.reg.Subscribe(a, "transcription.progress", "ep_1", "ep_2")
			}
			id := ids.New(ids.Event, time.Now())
			req := tc.req(t, accts, id)

			type answer struct {
				resp *ingestionv1.PublishEventResponse
				err  error
			}
			answers := make([]answer, callers)
			publish := func(i int) {
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				defer cancel()
				answers[i].resp, answers[i].err = e.client.PublishEvent(ctx, req(i))
			}
			// Caller 0 is held in its window; then all the others at once.
			held := make(chan struct{})
			go func() { defer close(held); publish(0) }()
			select {
			case <-h.held:
			case <-time.After(10 * time.Second):
				t.Fatal("the first publish never reached the point where it is held")
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 1; i < callers; i++ {
				wg.Go(func() { <-start; publish(i) })
			}
			close(start)
			wg.Wait()
			close(h.release)
			<-held

			// One event, one body.
			keys := e.eventKeys(t)
			if len(keys) != 1 {
				t.Fatalf("event keys %v, want exactly one", keys)
			}
			stored, err := e.store.Get(t.Context(), keys[0][len("wh:evt:"):])
			if err != nil {
				t.Fatal(err)
			}
			if !tc.holdAfterGet && stored.IdempotencyKey != "upl_7/progress" || tc.holdAfterGet && stored.ID != id {
				t.Errorf("stored event %s (key %q)", stored.ID, stored.IdempotencyKey)
			}
			if !stored.FanoutDone || stored.DeliveryCount != 2 {
				t.Errorf("stored event: fan-out done %v, %d deliveries; want done, 2", stored.FanoutDone, stored.DeliveryCount)
			}

			// Every caller of its account gets it; the other account is refused.
			originals, wrong := 0, 0
			for i, a := range answers {
				acct := req(i).GetAccountId()
				if acct != stored.AccountID {
					if !grpctest.CheckCode(t, a.err, codes.AlreadyExists, id) {
						t.Errorf("caller %d of the other account got event %q", i, a.resp.GetEvent().GetId())
					}
					continue
				}
				if a.err != nil {
					t.Errorf("caller %d: %v", i, a.err)
					continue
				}
				ev := a.resp.GetEvent()
				if ev.GetId() != stored.ID || ev.GetPayload() != string(stored.Payload) || ev.GetAccountId() != stored.AccountID {
					if wrong++; wrong == 1 {
						t.Errorf("caller %d got %s %s, want the stored %s %s", i, ev.GetId(), ev.GetPayload(), stored.ID, stored.Payload)
					}
				}
				if !a.resp.GetDuplicate() {
					originals++
				}
			}
			if wrong > 1 {
				t.Errorf("%d of %d callers got another event or body than the stored one", wrong, callers)
			}
			if originals != 1 {
				t.Errorf("%d callers were answered as the original publish, want 1", originals)
			}

			// Deliveries of that one event only, to each endpoint.
			var pairs []string
			for _, c := range e.dlv.calls() {
				if c.GetAccountId() != stored.AccountID {
					t.Errorf("Schedule for account %s, want only %s", c.GetAccountId(), stored.AccountID)
				}
				for _, it := range c.GetItems() {
					if p := it.GetEventId() + "->" + it.GetEndpointId(); !slices.Contains(pairs, p) {
						pairs = append(pairs, p)
					}
				}
			}
			slices.Sort(pairs)
			if want := []string{stored.ID + "->ep_1", stored.ID + "->ep_2"}; !slices.Equal(pairs, want) {
				t.Errorf("scheduled %v, want %v", pairs, want)
			}

			// Visible to its account with its body, listed once; not to the other.
			for _, a := range accts {
				got, err := e.client.GetEvent(custCtx[a], &ingestionv1.GetEventRequest{Id: stored.ID})
				list, lerr := e.client.ListEvents(custCtx[a], &ingestionv1.ListEventsRequest{})
				if lerr != nil {
					t.Fatal(lerr)
				}
				listed := fmt.Sprint(len(list.GetEvents()))
				if a == stored.AccountID {
					if err != nil || got.GetEvent().GetPayload() != string(stored.Payload) || listed != "1" {
						t.Errorf("owner: GetEvent %v, %v; %s listed", got.GetEvent(), err, listed)
					}
					continue
				}
				grpctest.RequireCode(t, err, codes.NotFound)
				if listed != "0" {
					t.Errorf("the other account lists %s events", listed)
				}
			}
		})
	}
}
