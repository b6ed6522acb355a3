package ingest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/registryclient"
)

// The domain without a network: in-memory dependencies. The gRPC tests in
// internal/grpcapi run the same flows against Redis.

type memStore struct {
	mu      sync.Mutex
	evs     map[string]eventstore.Event
	putErr  error
	claims  map[string]string
	indexed []string
}

func (m *memStore) CreateMany(_ context.Context, evs []*eventstore.Event) ([]*eventstore.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.putErr != nil {
		return nil, m.putErr
	}
	found := make([]*eventstore.Event, len(evs))
	for i, e := range evs {
		if old, ok := m.evs[e.ID]; ok {
			found[i] = &old
			continue
		}
		m.evs[e.ID] = *e
	}
	return found, nil
}

func (m *memStore) Get(_ context.Context, id string) (*eventstore.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.evs[id]
	if !ok {
		return nil, apierr.NotFound("event", id)
	}
	return &e, nil
}

func (m *memStore) MarkFannedOutMany(_ context.Context, fs []eventstore.Fanout) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range fs {
		e := m.evs[f.ID]
		e.FanoutDone, e.DeliveryCount = true, f.Count
		m.evs[f.ID] = e
	}
	return nil
}

func (m *memStore) Claim(_ context.Context, cs []Claim) ([]KeyOwner, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]KeyOwner, len(cs))
	for i, c := range cs {
		k := c.AccountID + "/" + c.Key
		_, taken := m.claims[k]
		if !taken {
			m.claims[k] = c.EventID
		}
		out[i] = KeyOwner{EventID: m.claims[k], New: !taken}
	}
	return out, nil
}

func (m *memStore) Add(_ context.Context, _ time.Time, evs []*eventstore.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range evs {
		m.indexed = append(m.indexed, e.ID)
	}
	return nil
}

func (m *memStore) Page(context.Context, string, IndexRange, int) ([]string, bool, error) {
	return nil, false, nil
}

func (m *memStore) Forget(context.Context, string, []string) error { return nil }

type fanout struct {
	mu        sync.Mutex
	endpoints []string
	items     []ScheduleItem
}

func (f *fanout) ListSubscribers(context.Context, string, string) (registryclient.SubscriberList, error) {
	return registryclient.SubscriberList{EndpointIDs: f.endpoints}, nil
}

func (f *fanout) Schedule(_ context.Context, _, _ string, items []ScheduleItem) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items = append(f.items, items...)
	return nil
}

func newService() (*Service, *memStore, *fanout) {
	m := &memStore{evs: map[string]eventstore.Event{}, claims: map[string]string{}}
	f := &fanout{endpoints: []string{"ep_1"}}
	return New(Config{Store: m, Index: m, Subscribers: f, Scheduler: f}), m, f
}

func started(acct string) Request {
	data, _ := events.Sample("transcription.started")
	return Request{AccountID: acct, Type: "transcription.started", Data: data}
}

func TestStoreFailureIsUnavailableAndSchedulesNothing(t *testing.T) {
	s, m, f := newService()
	m.putErr = errors.New("connection refused")
	_, err := s.Publish(t.Context(), started(ids.New(ids.Account, time.Now())))
	if !errors.Is(err, apierr.ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want Unavailable naming the cause", err)
	}
	if len(f.items) != 0 || len(m.indexed) != 0 {
		t.Errorf("after a failed store: scheduled %v, indexed %v", f.items, m.indexed)
	}
}

func TestBatchIDSharedAcrossAccountsIsInvalid(t *testing.T) {
	s, m, _ := newService()
	id := ids.New(ids.Event, time.Now())
	a, b := started(ids.New(ids.Account, time.Now())), started(ids.New(ids.Account, time.Now()))
	a.ID, b.ID = id, id
	_, err := s.PublishBatch(t.Context(), []Request{a, b})
	var inv *apierr.InvalidError
	if !errors.As(err, &inv) || inv.Field != "events[1].id" {
		t.Fatalf("err = %v, want invalid events[1].id", err)
	}
	if len(m.evs) != 0 || len(m.claims) != 0 {
		t.Errorf("stored %v, claimed %v", m.evs, m.claims)
	}
}

func TestBatchSameIDTwiceIsOneEvent(t *testing.T) {
	s, m, f := newService()
	acct := ids.New(ids.Account, time.Now())
	a, b := started(acct), started(acct)
	a.ID, b.ID = ids.New(ids.Event, time.Now()), "" // b: same key as a's id
	b.IdempotencyKey = a.ID
	c := started(acct)
	c.ID, c.IdempotencyKey = a.ID, "other"
	res, err := s.PublishBatch(t.Context(), []Request{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Duplicate || !res[1].Duplicate || !res[2].Duplicate || res[1].Event.ID != a.ID || res[2].Event.ID != a.ID {
		t.Errorf("results %+v %+v %+v", res[0], res[1], res[2])
	}
	if len(m.evs) != 1 || len(f.items) != 1 {
		t.Errorf("%d events stored, %d deliveries scheduled", len(m.evs), len(f.items))
	}
}

func TestParallelReturnsFirstError(t *testing.T) {
	boom := errors.New("boom")
	var mu sync.Mutex
	ran := 0
	err := parallel(t.Context(), 50, 4, func(ctx context.Context, i int) error {
		mu.Lock()
		ran++
		mu.Unlock()
		if i == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || ran == 0 {
		t.Fatalf("err %v after %d runs", err, ran)
	}
	if err := parallel(t.Context(), 0, 4, nil); err != nil {
		t.Fatal(err)
	}
}

// A batch can name one event twice in ways validate cannot see: by a key an
// earlier call claimed for an id, and by that id itself. Both then answer
// with the one event, and it is stored and fanned out once.
func TestBatchKeyAndIDOfOneEventAreOneEvent(t *testing.T) {
	for _, stored := range []bool{true, false} {
		name := "original stored"
		if !stored {
			name = "key claimed by a call that stopped before storing"
		}
		t.Run(name, func(t *testing.T) {
			s, m, f := newService()
			acct := ids.New(ids.Account, time.Now())
			id := ids.New(ids.Event, time.Now())
			if stored {
				earlier := started(acct)
				earlier.ID, earlier.IdempotencyKey = id, "k1"
				if _, err := s.Publish(t.Context(), earlier); err != nil {
					t.Fatal(err)
				}
			} else {
				m.claims[acct+"/k1"] = id
			}
			f.items = nil
			byKey, byID := started(acct), started(acct)
			byKey.IdempotencyKey, byID.ID = "k1", id
			res, err := s.PublishBatch(t.Context(), []Request{byKey, byID})
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Event.ID != id || res[1].Event.ID != id || res[0].Event != res[1].Event {
				t.Errorf("events %s %s, want both %s", res[0].Event.ID, res[1].Event.ID, id)
			}
			if res[0].Duplicate != stored || !res[1].Duplicate {
				t.Errorf("duplicate %v %v, want %v true", res[0].Duplicate, res[1].Duplicate, stored)
			}
			wantScheduled := 1
			if stored {
				wantScheduled = 0 // its fan-out was done by the earlier call
			}
			if len(m.evs) != 1 || len(f.items) != wantScheduled {
				t.Errorf("%d events stored, %d deliveries scheduled, want 1 and %d", len(m.evs), len(f.items), wantScheduled)
			}
		})
	}
}
