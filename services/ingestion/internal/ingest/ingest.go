// Package ingest is the ingestion service's domain: it validates events,
// applies idempotency, stores each event once and fans it out to the
// subscribed endpoints. It knows nothing of gRPC or Redis; its dependencies
// are the small interfaces below.
//
// Durability: a publish is answered with success only after the event is
// stored and every one of its deliveries is scheduled. Any failure on the
// way is returned (Unavailable) so that the producer retries; a retry with
// the same idempotency key (or event id) finds the stored event and finishes
// its fan-out, which is an idempotent upsert downstream.
package ingest

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/eventstore"
)

// Subscribers answers which endpoints of an account receive an event type.
type Subscribers interface {
	ListSubscribers(ctx context.Context, accountID, eventType string) ([]string, error)
}

// ScheduleItem is one delivery: an event to one endpoint.
type ScheduleItem struct {
	EventID    string
	EndpointID string
	// TraceParent and TraceState are the W3C trace context of the publish
	// call of the event: one Schedule call carries the events of many
	// calls when concurrent publishes are grouped.
	TraceParent, TraceState string
}

// Scheduler durably schedules deliveries. Scheduling the same (event,
// endpoint) again must be a no-op (an upsert).
type Scheduler interface {
	Schedule(ctx context.Context, accountID, eventType string, items []ScheduleItem) error
}

// EventStore keeps each event once (implemented by *eventstore.Store).
type EventStore interface {
	// CreateMany stores each event unless one of its id is stored: the
	// check and the write are one atomic step, and a stored event is never
	// overwritten. It returns, per event, nil when it stored it, else the
	// event stored under its id (possibly of another account).
	CreateMany(ctx context.Context, evs []*eventstore.Event) ([]*eventstore.Event, error)
	Get(ctx context.Context, id string) (*eventstore.Event, error)
	MarkFannedOutMany(ctx context.Context, fs []eventstore.Fanout) error
}

// Claim asks for an idempotency key of an account for an event.
type Claim struct {
	AccountID string
	Key       string
	EventID   string
}

// IndexEntry is one event id of a listing and the cursor that continues
// the listing after it.
type IndexEntry struct {
	ID     string
	Cursor string
}

// Index holds idempotency keys and the per-account list of events.
type Index interface {
	// Claim reserves each key for its event unless the key is taken, for
	// the retention period. It returns, per claim, the id of the event that
	// owns the key: claim.EventID when the claim succeeded.
	Claim(ctx context.Context, claims []Claim) ([]string, error)
	// Add lists events under their accounts (and forgets entries older than
	// the retention period).
	Add(ctx context.Context, now time.Time, evs []*eventstore.Event) error
	// Page returns up to n event ids of an account, newest first, after
	// cursor ("" = from the newest), and whether more may follow. A cursor
	// that Page did not make is an *apierr.InvalidError for "page_token".
	Page(ctx context.Context, accountID, cursor string, n int) (entries []IndexEntry, more bool, err error)
}

// Config wires a Service.
type Config struct {
	Store       EventStore
	Index       Index
	Subscribers Subscribers
	Scheduler   Scheduler
	// Settings and Credits serve ReportCreditBalance (it is Unimplemented
	// without them).
	Settings Settings
	Credits  CreditTracker
	// MaxPayloadBytes bounds an envelope (default events.DefaultMaxPayloadBytes).
	MaxPayloadBytes int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// TracerProvider makes the ingest.* spans (default: the global one).
	TracerProvider trace.TracerProvider
	// MeterProvider makes webhook.events.published (default: the global one).
	MeterProvider metric.MeterProvider
}

// Service implements the ingestion use cases.
type Service struct {
	store      EventStore
	index      Index
	subs       Subscribers
	sched      Scheduler
	settings   Settings
	credits    CreditTracker
	maxPayload int
	now        func() time.Time
	tracer     trace.Tracer
	published  metric.Int64Counter
	groups     *grouper // concurrent Publish calls (group.go)
}

// New returns a Service.
func New(c Config) *Service {
	s := &Service{
		store: c.Store, index: c.Index, subs: c.Subscribers, sched: c.Scheduler,
		settings: c.Settings, credits: c.Credits,
		maxPayload: c.MaxPayloadBytes, now: c.Now,
	}
	if s.maxPayload <= 0 {
		s.maxPayload = events.DefaultMaxPayloadBytes
	}
	if s.now == nil {
		s.now = time.Now
	}
	tp := c.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	s.tracer = tp.Tracer("github.com/voxscriber/webhooks/services/ingestion/internal/ingest")
	mp := c.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	s.published = newPublishedCounter(mp.Meter("github.com/voxscriber/webhooks/services/ingestion/internal/ingest"))
	s.groups = newGrouper(s)
	return s
}
