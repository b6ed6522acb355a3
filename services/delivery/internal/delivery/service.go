package delivery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/shard"
)

// MaxScheduleItems bounds one Schedule call (PublishEvents fans out at most
// 500 events, each to a few endpoints).
const MaxScheduleItems = 10_000

// Page sizes of List.
const (
	DefaultPageSize = 50
	MaxPageSize     = 100
)

// DefaultTestEventType is what Send Test sends when no type is given.
const DefaultTestEventType = "transcription.completed"

// apiTimeout bounds the store calls of one API operation when the caller
// set no shorter deadline.
const apiTimeout = 10 * time.Second

// Service holds the operations behind the gRPC API. Account checks happen
// here: a delivery of another account does not exist.
type Service struct {
	d *Dispatcher
	w *Worker
}

// NewService returns a Service. w, the worker of this process (nil: none),
// is woken after new work is due, and gets what Schedule creates due at
// once, leased to it, as far as it has free slots.
func NewService(d *Dispatcher, w *Worker) *Service {
	return &Service{d: d, w: w}
}

// wake wakes the local worker's claimer.
func (s *Service) wake() {
	if s.w != nil {
		s.w.Wake()
	}
}

// ScheduleItem asks for one event to be delivered to one endpoint.
type ScheduleItem struct {
	EventID    string
	EndpointID string
	// TraceParent and TraceState are the W3C trace context of the publish
	// the event comes from; empty: the caller's (ctx).
	TraceParent, TraceState string
	// OrderingKey is set when the endpoint is ordered by key: the delivery
	// joins the tail of that key's line (events.MaxOrderingKeyBytes at
	// most).
	OrderingKey string
	// RepeatOrderingKey is set when the item repeats a fan-out that may
	// have made the delivery already: the key the event resolves to,
	// whether the endpoint is ordered now or not. A delivery made then
	// under the endpoint's other ordering is kept (its id is returned) and
	// no second one is made.
	RepeatOrderingKey string
}

// DeliveryID is the id of the delivery of an event to an endpoint: derived,
// so scheduling twice is one delivery.
func DeliveryID(eventID, endpointID string) string {
	return ids.Derive(ids.Delivery, eventID, endpointID)
}

// OrderedDeliveryID is the id of an ordered delivery: derived like
// DeliveryID, but placed in the shard of its line (endpoint, key), so that
// every delivery of one line lives in one Redis Cluster slot and releasing
// the next is one script. It is the first of the ids derived with a counter
// 0, 1, 2, … whose shard is the line's (16 tries on average, a few µs).
func OrderedDeliveryID(eventID, endpointID, orderingKey string) string {
	want := shard.Of(endpointID + "|" + orderingKey)
	for i := 0; ; i++ {
		id := ids.Derive(ids.Delivery, eventID, endpointID, "ordered", strconv.Itoa(i))
		if shard.Of(id) == want {
			return id
		}
	}
}

// Schedule durably schedules the first attempt of each item and returns the
// delivery ids in item order. Items already scheduled are left as they are.
// The caller's trace context (in ctx) becomes the parent of every attempt.
func (s *Service) Schedule(ctx context.Context, accountID, eventType string, items []ScheduleItem) ([]string, error) {
	switch {
	case accountID == "":
		return nil, apierr.Invalid("account_id", "is required")
	case eventType == "":
		return nil, apierr.Invalid("event_type", "is required")
	case len(items) == 0:
		return nil, apierr.Invalid("items", "at least one item is required")
	case len(items) > MaxScheduleItems:
		return nil, apierr.Invalid("items", "at most %d items per call, got %d", MaxScheduleItems, len(items))
	}
	for i, it := range items {
		switch {
		case it.EventID == "":
			return nil, apierr.Invalid(fmt.Sprintf("items[%d].event_id", i), "is required")
		case it.EndpointID == "":
			return nil, apierr.Invalid(fmt.Sprintf("items[%d].endpoint_id", i), "is required")
		case len(it.OrderingKey) > events.MaxOrderingKeyBytes:
			return nil, apierr.Invalid(fmt.Sprintf("items[%d].ordering_key", i), "is %d bytes; at most %d", len(it.OrderingKey), events.MaxOrderingKeyBytes)
		case len(it.RepeatOrderingKey) > events.MaxOrderingKeyBytes:
			return nil, apierr.Invalid(fmt.Sprintf("items[%d].repeat_ordering_key", i), "is %d bytes; at most %d", len(it.RepeatOrderingKey), events.MaxOrderingKeyBytes)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	payloads, err := s.checkEventAccounts(ctx, accountID, items)
	if err != nil {
		return nil, err
	}
	carrier := propagation.MapCarrier{}
	s.d.prop.Inject(ctx, carrier)
	now := s.d.deps.Clock.Now()
	ds := make([]Delivery, len(items))
	out := make([]string, len(items))
	for i, it := range items {
		id := DeliveryID(it.EventID, it.EndpointID)
		if it.OrderingKey != "" {
			id = OrderedDeliveryID(it.EventID, it.EndpointID, it.OrderingKey)
		}
		out[i] = id
		ds[i] = Delivery{
			ID: id, EventID: it.EventID, EndpointID: it.EndpointID, AccountID: accountID, OrderingKey: it.OrderingKey,
			EventType: eventType, Status: StatusPending, CreateTime: now, UpdateTime: now,
			NextTime:    now.Add(s.d.cfg.Retry.First()),
			TraceParent: carrier.Get("traceparent"), TraceState: carrier.Get("tracestate"),
		}
		if it.TraceParent != "" {
			ds[i].TraceParent, ds[i].TraceState = it.TraceParent, it.TraceState
		}
	}
	ds, err = s.keepEarlier(ctx, items, ds, out)
	if err != nil {
		return nil, err
	}
	slots := s.leaseDue(ds, now)
	created, err := s.d.deps.Queue.Schedule(ctx, ds)
	if err != nil {
		if slots > 0 {
			s.w.unreserve(slots) // a delivery written leased anyway comes due when its lease ends
		}
		return nil, fmt.Errorf("schedule %d deliveries: %w", len(ds), err)
	}
	var jobs []Job
	woken := false
	for i, c := range created {
		switch {
		case !c:
		case !ds[i].LeaseUntil.IsZero():
			j := Job{Delivery: ds[i], LeaseUntil: ds[i].LeaseUntil, Payload: payloads[ds[i].EventID]}
			j.Delivery.Version++ // what the create wrote
			j.Delivery.LeaseUntil = time.Time{}
			jobs = append(jobs, j)
		case !woken && !ds[i].NextTime.After(now.Add(time.Second)):
			s.wake()
			woken = true
		}
	}
	if slots > 0 {
		s.w.unreserve(slots - len(jobs))
		s.w.start(jobs)
	}
	return out, nil
}

// leaseDue marks the unordered deliveries of ds that are due at once to be
// created leased to the local worker, as many as it reserved slots for,
// and returns that number (an ordered one may have to wait in its line).
func (s *Service) leaseDue(ds []Delivery, now time.Time) int {
	if s.w == nil {
		return 0
	}
	leasable := func(d *Delivery) bool { return d.OrderingKey == "" && !d.NextTime.After(now) }
	due := 0
	for i := range ds {
		if leasable(&ds[i]) {
			due++
		}
	}
	slots := s.w.reserve(due)
	lease := time.UnixMilli(s.d.LeaseUntil(now).UnixMilli()) // as the queue stores it
	for i, k := 0, 0; i < len(ds) && k < slots; i++ {
		if leasable(&ds[i]) {
			ds[i].LeaseUntil = lease
			k++
		}
	}
	return slots
}

// otherOrderingID is the id the delivery of a repeated item would have had
// under the endpoint's other ordering ("" for an item that is no repeat).
func otherOrderingID(it ScheduleItem) string {
	switch {
	case it.RepeatOrderingKey == "":
		return ""
	case it.OrderingKey != "":
		return DeliveryID(it.EventID, it.EndpointID)
	default:
		return OrderedDeliveryID(it.EventID, it.EndpointID, it.RepeatOrderingKey)
	}
}

// keepEarlier drops from ds the repeated items whose delivery the first
// fan-out made under the endpoint's other ordering (it is still in Redis:
// the archiver keeps a delivery there until its event's fan-out is
// recorded), naming that delivery in out instead. It returns the
// deliveries left to schedule.
func (s *Service) keepEarlier(ctx context.Context, items []ScheduleItem, ds []Delivery, out []string) ([]Delivery, error) {
	var idx []int
	var other []string
	for i, it := range items {
		if id := otherOrderingID(it); id != "" {
			idx, other = append(idx, i), append(other, id)
		}
	}
	if len(other) == 0 {
		return ds, nil
	}
	found, err := s.d.deps.Queue.Exist(ctx, other)
	if err != nil {
		return nil, fmt.Errorf("look up %d repeated deliveries: %w", len(other), err)
	}
	drop := make(map[int]bool)
	for j, ok := range found {
		if ok {
			out[idx[j]] = other[j]
			drop[idx[j]] = true
		}
	}
	if len(drop) == 0 {
		return ds, nil
	}
	kept := make([]Delivery, 0, len(ds)-len(drop))
	for i, d := range ds {
		if !drop[i] {
			kept = append(kept, d)
		}
	}
	return kept, nil
}

// checkEventAccounts refuses the whole call, before anything is scheduled,
// unless every event is stored under accountID. The account of a delivery
// decides whose delivery list it joins and whose endpoint lookups it makes,
// and its body is read by event id alone, so trusting the caller's account
// would let a forged Schedule send one account's events to another's
// endpoints. With a local worker, which may start some of the deliveries
// at once, the same read returns the events' payloads, by event id.
func (s *Service) checkEventAccounts(ctx context.Context, accountID string, items []ScheduleItem) (map[string][]byte, error) {
	if s.d.deps.EventAccounts == nil {
		return nil, errors.New("schedule: no event store to check event accounts against")
	}
	first := map[string]int{} // event id -> index of its first item
	var eventIDs []string
	for i, it := range items {
		if _, seen := first[it.EventID]; !seen {
			first[it.EventID] = i
			eventIDs = append(eventIDs, it.EventID)
		}
	}
	accounts, bodies, err := s.d.deps.EventAccounts.Accounts(ctx, eventIDs, s.w != nil)
	if err != nil {
		return nil, apierr.Wrap(apierr.ErrUnavailable, "reading the accounts of %d events: %v", len(eventIDs), err)
	}
	for j, id := range eventIDs {
		field := fmt.Sprintf("items[%d].event_id", first[id])
		switch accounts[j] {
		case accountID:
		case "":
			return nil, apierr.Invalid(field, "event %s is not stored; nothing was scheduled", id)
		default:
			return nil, apierr.Invalid(field, "event %s does not belong to account %s; nothing was scheduled", id, accountID)
		}
	}
	var payloads map[string][]byte
	if bodies != nil {
		payloads = make(map[string][]byte, len(eventIDs))
		for j, id := range eventIDs {
			payloads[id] = bodies[j]
		}
	}
	return payloads, nil
}

// Get returns one of the account's deliveries with its attempts and the
// body it sends (empty when the event has expired).
func (s *Service) Get(ctx context.Context, accountID, id string) (*Delivery, []Attempt, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	d, atts, err := s.get(ctx, accountID, id)
	if err != nil {
		return nil, nil, nil, err
	}
	body, err := s.d.body(ctx, d, nil)
	if err != nil && !errors.Is(err, apierr.ErrNotFound) {
		return nil, nil, nil, fmt.Errorf("payload of event %s: %w", d.EventID, err)
	}
	return d, atts, body, nil
}

func (s *Service) get(ctx context.Context, accountID, id string) (*Delivery, []Attempt, error) {
	if id == "" {
		return nil, nil, apierr.Invalid("id", "is required")
	}
	if accountID == "" {
		return nil, nil, apierr.Wrap(apierr.ErrUnauthenticated, "no account")
	}
	if !ids.Valid(ids.Delivery, id) {
		return nil, nil, apierr.NotFound("delivery", id)
	}
	d, atts, err := s.d.deps.History.Get(ctx, accountID, id)
	if err != nil {
		return nil, nil, err
	}
	if d.AccountID != accountID {
		return nil, nil, apierr.NotFound("delivery", id) // another account's: it does not exist
	}
	return d, atts, nil
}

// Filter selects deliveries in List.
type Filter struct {
	EndpointID string
	Status     Status // "" for any
	EventType  string
	EventID    string
	Start, End time.Time // create time bounds; zero: unbounded
	PageSize   int
	PageToken  string
}

// List pages through the account's deliveries, newest first.
func (s *Service) List(ctx context.Context, accountID string, f Filter) ([]Delivery, string, error) {
	if accountID == "" {
		return nil, "", apierr.Wrap(apierr.ErrUnauthenticated, "no account")
	}
	switch {
	case f.PageSize < 0:
		return nil, "", apierr.Invalid("page_size", "must not be negative")
	case f.PageSize == 0:
		f.PageSize = DefaultPageSize
	case f.PageSize > MaxPageSize:
		f.PageSize = MaxPageSize
	}
	if !f.Start.IsZero() && !f.End.IsZero() && f.End.Before(f.Start) {
		return nil, "", apierr.Invalid("end_time", "is before start_time")
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	return s.d.deps.History.List(ctx, accountID, ListQuery{
		Start: f.Start, End: f.End, PageSize: f.PageSize, PageToken: f.PageToken,
		EndpointID: f.EndpointID, EventType: f.EventType, EventID: f.EventID, Status: f.Status,
		Match: func(d *Delivery) bool {
			return (f.EndpointID == "" || d.EndpointID == f.EndpointID) &&
				(f.Status == "" || d.Status == f.Status) &&
				(f.EventType == "" || d.EventType == f.EventType) &&
				(f.EventID == "" || d.EventID == f.EventID)
		},
	})
}

// Retry makes a delivery due now. Its next attempt continues the count.
// A delivery whose attempt is in flight is left alone.
func (s *Service) Retry(ctx context.Context, accountID, id string) (*Delivery, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	d, _, err := s.get(ctx, accountID, id)
	if err != nil {
		return nil, err
	}
	if d.Test {
		return nil, apierr.Wrap(apierr.ErrFailedPrecondition, "delivery %s is a test delivery; use Send Test instead", id)
	}
	now := s.d.deps.Clock.Now()
	// The entry goes into the script that makes the delivery due (its
	// shard's slot, pkg/auditlog's per-shard keys): a retry never happens
	// without its entry, and one refused (an attempt in flight) has none.
	ent := auditlog.New(accountID, auditlog.ActorFrom(ctx), auditlog.DeliveryRetry, d.ID,
		fmt.Sprintf("manual retry of delivery %s (event %s, endpoint %s)", d.ID, d.EventID, d.EndpointID), now)
	if _, err := s.d.deps.History.Requeue(ctx, accountID, id, now, ent); err != nil {
		return nil, fmt.Errorf("requeue %s: %w", id, err)
	}
	s.wake()
	d, _, err = s.get(ctx, accountID, id)
	return d, err
}

// TestResult is the receiver's answer to a test delivery.
type TestResult struct {
	DeliveryID string
	Attempt    Attempt
}

// SendTest synchronously delivers a sample event of eventType (default
// transcription.completed) to an endpoint in any status, through the same
// sender, guard and timeout as scheduled attempts, and records it in the
// log as a test delivery.
func (s *Service) SendTest(ctx context.Context, accountID, endpointID, eventType string) (*TestResult, error) {
	if accountID == "" {
		return nil, apierr.Wrap(apierr.ErrUnauthenticated, "no account")
	}
	if endpointID == "" {
		return nil, apierr.Invalid("endpoint_id", "is required")
	}
	if eventType == "" {
		eventType = DefaultTestEventType
	}
	data, ok := events.Sample(eventType)
	if !ok {
		var names []string
		for _, t := range events.Catalogue() {
			names = append(names, t.Name)
		}
		return nil, apierr.Invalid("event_type", "unknown event type %q; known types: %s", eventType, strings.Join(names, ", "))
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	t, err := s.d.deps.Targets.Target(lctx, accountID, endpointID)
	cancel()
	if err != nil {
		if errors.Is(err, apierr.ErrNotFound) {
			return nil, apierr.NotFound("endpoint", endpointID)
		}
		return nil, apierr.Wrap(apierr.ErrUnavailable, "endpoint lookup failed: %v", err)
	}
	now := s.d.deps.Clock.Now()
	eventID := ids.New(ids.Event, now)
	body, err := events.Envelope(eventID, eventType, now, data, true)
	if err != nil {
		return nil, fmt.Errorf("sample %s: %w", eventType, err)
	}
	carrier := propagation.MapCarrier{}
	s.d.prop.Inject(ctx, carrier)
	d := Delivery{
		ID: DeliveryID(eventID, endpointID), EventID: eventID, EndpointID: endpointID, AccountID: accountID,
		EventType: eventType, CreateTime: now, Test: true, Body: body,
		TraceParent: carrier.Get("traceparent"), TraceState: carrier.Get("tracestate"),
	}
	att, _ := s.d.send(ctx, &prepared{target: t, body: body}, &d, 1)
	d.Attempts, d.LastCode, d.LastError = 1, att.StatusCode, att.Error
	d.UpdateTime = s.d.deps.Clock.Now()
	d.Status = StatusFailed
	if att.Succeeded() {
		d.Status = StatusSucceeded
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer rcancel()
	if err := s.d.deps.History.RecordTest(rctx, d, att); err != nil {
		// The customer still gets the receiver's answer; only the log entry is missing.
		s.d.deps.Logger.ErrorContext(ctx, "recording a test delivery failed", "delivery_id", d.ID, "error", err.Error())
	}
	return &TestResult{DeliveryID: d.ID, Attempt: att}, nil
}
