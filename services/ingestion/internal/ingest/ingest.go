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
	// ListSubscribers returns the endpoints an event published now goes
	// to, and those of them ordered by key.
	ListSubscribers(ctx context.Context, accountID, eventType string) (endpointIDs, ordered []string, err error)
}

// ScheduleItem is one delivery: an event to one endpoint.
type ScheduleItem struct {
	EventID    string
	EndpointID string
	// TraceParent and TraceState are the W3C trace context of the publish
	// call of the event: one Schedule call carries the events of many
	// calls when concurrent publishes are grouped.
	TraceParent, TraceState string
	// OrderingKey is set when the endpoint is ordered by key: the event's
	// eventstore.Event.LineKey.
	OrderingKey string
	// RepeatOrderingKey is set (to the event's LineKey, whatever the
	// endpoint's ordering) when the fan-out repeats one that may have made
	// the delivery already: the event was stored by an earlier call whose
	// fan-out was not recorded.
	RepeatOrderingKey string
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

// ListingStore is an EventStore that also lists the events it creates in
// their accounts' event lists (what Index.Add does) in the same step, one
// round trip instead of two; the publish path uses it when the store
// offers it. Entries of events it did not create must not matter (reads
// skip entries whose event is missing or of another account).
type ListingStore interface {
	EventStore
	CreateManyListed(ctx context.Context, now time.Time, evs []*eventstore.Event) ([]*eventstore.Event, error)
}

// Claim asks for an idempotency key of an account for an event.
type Claim struct {
	AccountID string
	Key       string
	EventID   string
	// At is when the claim is made (the publish's clock): the window of
	// IDEMPOTENCY_WINDOW starts there.
	At time.Time
}

// KeyOwner is the event that owns an idempotency key after a claim.
type KeyOwner struct {
	EventID string
	// New is set when this claim took the key: no event held it within the
	// idempotency window.
	New bool
}

// IndexRange bounds a page of an account's event list. Zero fields do not
// bound.
type IndexRange struct {
	// Before: only ids strictly before this one (the merged read path's
	// cursor: the last id of the previous page).
	Before string
	// Since and Until bound the time part of the id: Since <= t < Until.
	Since, Until time.Time
}

// Index holds idempotency keys and the per-account list of events.
type Index interface {
	// Claim reserves each key for its event unless an earlier claim holds
	// it, for the idempotency window (IDEMPOTENCY_WINDOW) from claim.At;
	// under any concurrency one claim of a key takes it. It returns, per claim, the event that owns the
	// key: claim.EventID and New when the claim succeeded.
	Claim(ctx context.Context, claims []Claim) ([]KeyOwner, error)
	// Add lists events under their accounts (and forgets entries older than
	// the retention period).
	Add(ctx context.Context, now time.Time, evs []*eventstore.Event) error
	// Page returns up to n event ids of an account within r, in id order
	// descending (newest first), and whether more may follow.
	Page(ctx context.Context, accountID string, r IndexRange, n int) (ids []string, more bool, err error)
	// Forget drops ids from an account's list (their events left Redis).
	Forget(ctx context.Context, accountID string, ids []string) error
}

// HistoryQuery selects an account's archived events; zero fields do not
// filter.
type HistoryQuery struct {
	Type, UploadID string
	Since, Until   time.Time
	Before         string // only ids strictly before this one
	PageSize       int
}

// History is the PostgreSQL tier: the events that left Redis once all
// their deliveries ended. Its errors wrap apierr.ErrNotFound, or
// apierr.ErrUnavailable (message "history store unreachable …") when
// PostgreSQL is down.
type History interface {
	// GetEvent returns an account's archived event (NotFound for another
	// account's).
	GetEvent(ctx context.Context, accountID, id string) (*eventstore.Event, error)
	// FindEvent returns the archived event of this id whatever its account
	// (idempotency only).
	FindEvent(ctx context.Context, id string) (*eventstore.Event, error)
	// ListEvents returns up to q.PageSize archived events, newest first,
	// and whether more follow.
	ListEvents(ctx context.Context, accountID string, q HistoryQuery) ([]*eventstore.Event, bool, error)
}

// Config wires a Service.
type Config struct {
	Store       EventStore
	Index       Index
	Subscribers Subscribers
	Scheduler   Scheduler
	// History is the PostgreSQL tier: reads and idempotency see it with
	// Redis as one (nil: Redis only).
	History History
	// Rollups serves DeliveryStats (Unavailable without it).
	Rollups Rollups
	// Settings and Credits serve ReportCreditBalance (it is Unimplemented
	// without them).
	Settings Settings
	Credits  CreditTracker
	// Eraser serves EraseAccount (Unavailable without it).
	Eraser AccountEraser
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
	history    History
	rollups    Rollups
	settings   Settings
	credits    CreditTracker
	eraser     AccountEraser
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
		history: c.History, rollups: c.Rollups,
		settings: c.Settings, credits: c.Credits, eraser: c.Eraser,
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
