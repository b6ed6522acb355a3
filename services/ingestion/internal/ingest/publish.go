package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// Limits of a publish request.
const (
	// MaxBatch is the most events one PublishBatch takes.
	MaxBatch = 500
	// MaxIdempotencyKeyBytes bounds an idempotency key.
	MaxIdempotencyKeyBytes = 255
	// maxScheduleItems bounds one Schedule call; bigger fan-outs are split.
	maxScheduleItems = 10_000
)

// Request is one event as a producer publishes it.
type Request struct {
	AccountID      string
	Type           string
	Data           map[string]any
	IdempotencyKey string
	// ID is an optional producer-chosen event id; reusing it acts like an
	// idempotency key.
	ID string
}

// Result is the outcome of publishing one event.
type Result struct {
	Event *eventstore.Event
	// Duplicate is set when the event repeats an earlier one (same
	// idempotency key or id): Event is then the original.
	Duplicate bool
}

// item is one event of a publish call on its way through the stages.
type item struct {
	idx    int
	prefix string // field prefix of error messages: "" or "events[i]."
	req    Request
	ev     *eventstore.Event // the new event, or the stored original
	key    string            // idempotency key: the producer's, else its chosen id
	root   int               // first item of the call with the same key or id (itself if none)
	target string            // id of the event the key belongs to
	stored bool              // ev was already stored by an earlier call
	fanout bool              // ev's deliveries still have to be scheduled
}

// Publish validates, stores and fans out one event. It succeeds only once
// the event and all its deliveries are durably scheduled.
func (s *Service) Publish(ctx context.Context, r Request) (Result, error) {
	res, err := s.publish(ctx, []Request{r}, false)
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// PublishBatch publishes 1 to MaxBatch events. Validation is all or nothing:
// one invalid event rejects the batch before anything is stored. Results are
// in the order of the requests.
func (s *Service) PublishBatch(ctx context.Context, rs []Request) ([]Result, error) {
	if len(rs) == 0 || len(rs) > MaxBatch {
		return nil, apierr.Invalid("events", "must hold 1 to %d events, got %d", MaxBatch, len(rs))
	}
	return s.publish(ctx, rs, true)
}

func (s *Service) publish(ctx context.Context, reqs []Request, batch bool) ([]Result, error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	var traceID string
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		traceID = sc.TraceID().String()
	}
	items, err := s.validate(ctx, reqs, batch, now, traceID)
	if err != nil {
		return nil, err
	}
	if err := s.persist(ctx, items, now); err != nil {
		return nil, err
	}
	if err := s.fanout(ctx, items); err != nil {
		return nil, err
	}
	s.countPublished(ctx, items)
	out := make([]Result, len(items))
	for i, it := range items {
		root := items[it.root]
		out[i] = Result{Event: root.ev, Duplicate: it.root != i || root.stored}
	}
	return out, nil
}

// validate checks every request and builds its event and exact payload,
// before anything is stored. It also finds repeats within the call.
func (s *Service) validate(ctx context.Context, reqs []Request, batch bool, now time.Time, traceID string) (items []*item, err error) {
	_, span := s.tracer.Start(ctx, "ingest.validate")
	defer func() {
		if err == nil {
			setEventAttrs(span, items)
		}
		end(span, err)
	}()
	items = make([]*item, len(reqs))
	byKey := make(map[string]int) // account + key -> root
	byID := make(map[string]int)  // producer-chosen id -> root
	for i, r := range reqs {
		prefix := ""
		if batch {
			prefix = fmt.Sprintf("events[%d].", i)
		}
		it, err := s.prepare(r, prefix, now, traceID)
		if err != nil {
			return nil, err
		}
		it.idx, it.root = i, i
		acctKey := r.AccountID + "\x00" + it.key
		if j, ok := byKey[acctKey]; ok && it.key != "" {
			it.root = j
		}
		if j, ok := byID[r.ID]; ok && r.ID != "" {
			if items[j].req.AccountID != r.AccountID {
				return nil, apierr.Invalid(prefix+"id", "%s is also the id of events[%d], which belongs to another account", r.ID, j)
			}
			if it.root == i {
				it.root = j
			}
		}
		if _, ok := byKey[acctKey]; !ok && it.key != "" {
			byKey[acctKey] = it.root
		}
		if _, ok := byID[r.ID]; !ok && r.ID != "" {
			byID[r.ID] = it.root
		}
		items[i] = it
	}
	return items, nil
}

// prepare validates one request and builds its event.
func (s *Service) prepare(r Request, prefix string, now time.Time, traceID string) (*item, error) {
	switch {
	case r.AccountID == "":
		return nil, apierr.Invalid(prefix+"account_id", "is required")
	case !ids.Valid(ids.Account, r.AccountID):
		return nil, apierr.Invalid(prefix+"account_id", "must be an account id (acct_ followed by 26 characters), got %q", short(r.AccountID))
	case r.ID != "" && !ids.Valid(ids.Event, r.ID):
		return nil, apierr.Invalid(prefix+"id", "must be an event id (evt_ followed by 26 characters) or empty, got %q", short(r.ID))
	case len(r.IdempotencyKey) > MaxIdempotencyKeyBytes:
		return nil, apierr.Invalid(prefix+"idempotency_key", "must be at most %d bytes, got %d", MaxIdempotencyKeyBytes, len(r.IdempotencyKey))
	}
	id := r.ID
	if id == "" {
		id = ids.New(ids.Event, now)
	}
	payload, err := s.envelope(id, r.Type, now, r.Data, prefix)
	if err != nil {
		return nil, err
	}
	key := r.IdempotencyKey
	if key == "" {
		key = r.ID
	}
	upload, _ := r.Data["uploadId"].(string)
	ev := &eventstore.Event{
		ID: id, AccountID: r.AccountID, Type: r.Type, Payload: payload, CreateTime: now,
		IdempotencyKey: r.IdempotencyKey, UploadID: upload, TraceID: traceID,
	}
	return &item{prefix: prefix, req: r, ev: ev, key: key, target: id, fanout: true}, nil
}

// envelope builds the exact body of an event and checks its size; problems
// are InvalidErrors naming the field.
func (s *Service) envelope(id, eventType string, ts time.Time, data map[string]any, prefix string) ([]byte, error) {
	payload, err := events.Envelope(id, eventType, ts, data, false)
	if err == nil {
		err = events.CheckSize(payload, s.maxPayload)
	}
	if err != nil {
		var ve *events.ValidationError
		if errors.As(err, &ve) {
			return nil, apierr.Invalid(prefix+ve.Field, "%s", strings.TrimPrefix(ve.Message, ve.Field+": "))
		}
		return nil, err
	}
	return payload, nil
}

// persist applies idempotency and writes the new events.
func (s *Service) persist(ctx context.Context, items []*item, now time.Time) (err error) {
	ctx, span := s.tracer.Start(ctx, "ingest.store")
	setEventAttrs(span, items)
	defer func() { end(span, err) }()

	var roots []*item
	for _, it := range items {
		if it.root == it.idx {
			roots = append(roots, it)
		}
	}

	// Idempotency: claim each key for the new event, or learn its owner.
	var claims []Claim
	var claimed []*item
	for _, it := range roots {
		if it.key != "" {
			claims = append(claims, Claim{AccountID: it.ev.AccountID, Key: it.key, EventID: it.ev.ID})
			claimed = append(claimed, it)
		}
	}
	if len(claims) > 0 {
		owners, err := s.index.Claim(ctx, claims)
		if err != nil {
			return unavailable(ctx, "claiming idempotency keys", err)
		}
		for j, it := range claimed {
			it.target = owners[j]
		}
	}

	// Keys owned by earlier events, and producer-chosen ids, may name an
	// event that is already stored.
	var look []*item
	for _, it := range roots {
		if it.target != it.ev.ID || it.req.ID != "" {
			look = append(look, it)
		}
	}
	found := make([]*eventstore.Event, len(look))
	err = parallel(ctx, len(look), 16, func(ctx context.Context, j int) error {
		e, err := s.store.Get(ctx, look[j].target)
		if errors.Is(err, apierr.ErrNotFound) {
			return nil
		}
		if err != nil {
			return unavailable(ctx, "reading the original event", err)
		}
		found[j] = e
		return nil
	})
	if err != nil {
		return err
	}
	for j, it := range look {
		e := found[j]
		switch {
		case e == nil && it.target != it.ev.ID:
			// The key was claimed by a call that stopped before storing its
			// event: store the event under that id now.
			payload, err := s.envelope(it.target, it.ev.Type, it.ev.CreateTime, it.req.Data, it.prefix)
			if err != nil {
				return err
			}
			it.ev.ID, it.ev.Payload = it.target, payload
		case e == nil:
			// A new producer-chosen id.
		case e.AccountID != it.ev.AccountID:
			return apierr.Wrap(apierr.ErrAlreadyExists, "%sid: event %s belongs to another account; publish with another id", it.prefix, e.ID)
		default:
			it.ev, it.stored, it.fanout = e, true, !e.FanoutDone
		}
	}

	// Two roots that resolved to the same event id are one event.
	byID := make(map[string]int, len(roots))
	var put, index []*eventstore.Event
	for _, it := range roots {
		if j, ok := byID[it.ev.ID]; ok {
			it.root, it.fanout = j, false
			continue
		}
		byID[it.ev.ID] = it.idx
		if !it.stored {
			put = append(put, it.ev)
		}
		if it.fanout {
			index = append(index, it.ev) // again after a crash: ZADD is idempotent
		}
	}
	for _, it := range items {
		it.root = items[it.root].root
	}

	if err := s.store.PutMany(ctx, put); err != nil {
		return unavailable(ctx, "storing the event", err)
	}
	if len(index) > 0 {
		if err := s.index.Add(ctx, now, index); err != nil {
			return unavailable(ctx, "indexing the event", err)
		}
	}
	return nil
}

// group is the events of one (account, type) pair and its subscribers.
type group struct {
	account, eventType string
	items              []*item
	endpoints          []string
}

// fanout schedules the deliveries of every event that needs it and then
// records that its fan-out is done.
func (s *Service) fanout(ctx context.Context, items []*item) (err error) {
	var todo []*item
	var groups []*group
	byPair := make(map[string]*group)
	for _, it := range items {
		if it.root != it.idx || !it.fanout {
			continue
		}
		todo = append(todo, it)
		pair := it.ev.AccountID + "\x00" + it.ev.Type
		g, ok := byPair[pair]
		if !ok {
			g = &group{account: it.ev.AccountID, eventType: it.ev.Type}
			byPair[pair] = g
			groups = append(groups, g)
		}
		g.items = append(g.items, it)
	}
	if len(todo) == 0 {
		return nil
	}
	ctx, span := s.tracer.Start(ctx, "ingest.fanout")
	setEventAttrs(span, todo)
	defer func() { end(span, err) }()

	if err := parallel(ctx, len(groups), 8, func(ctx context.Context, j int) error {
		g := groups[j]
		eps, err := s.subs.ListSubscribers(ctx, g.account, g.eventType)
		if err != nil {
			return unavailable(ctx, "looking up subscribers", err)
		}
		g.endpoints = eps
		return nil
	}); err != nil {
		return err
	}
	deliveries := 0
	for _, g := range groups {
		deliveries += len(g.items) * len(g.endpoints)
	}
	span.SetAttributes(attribute.Int("webhook.delivery.count", deliveries))

	if err := parallel(ctx, len(groups), 8, func(ctx context.Context, j int) error {
		g := groups[j]
		if len(g.endpoints) == 0 {
			return nil
		}
		all := make([]ScheduleItem, 0, len(g.items)*len(g.endpoints))
		for _, it := range g.items {
			for _, ep := range g.endpoints {
				all = append(all, ScheduleItem{EventID: it.ev.ID, EndpointID: ep})
			}
		}
		for len(all) > 0 {
			n := min(len(all), maxScheduleItems)
			if err := s.sched.Schedule(ctx, g.account, g.eventType, all[:n]); err != nil {
				return unavailable(ctx, "scheduling deliveries", err)
			}
			all = all[n:]
		}
		return nil
	}); err != nil {
		return err
	}

	counts := make(map[*item]int, len(todo))
	for _, g := range groups {
		for _, it := range g.items {
			counts[it] = len(g.endpoints)
		}
	}
	marks := make([]eventstore.Fanout, len(todo))
	for j, it := range todo {
		marks[j] = eventstore.Fanout{ID: it.ev.ID, Count: counts[it]}
	}
	if err := s.store.MarkFannedOutMany(ctx, marks); err != nil {
		return unavailable(ctx, "recording the fan-out", err)
	}
	for _, it := range todo {
		it.ev.FanoutDone, it.ev.DeliveryCount = true, counts[it]
	}
	return nil
}

// unavailable reports a failed dependency: the producer should retry.
func unavailable(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var inv *apierr.InvalidError
	if errors.As(err, &inv) || errors.Is(err, apierr.ErrUnavailable) {
		return err
	}
	return apierr.Wrap(apierr.ErrUnavailable, "%s failed (%v); the event is not acknowledged: retry with the same idempotency key", what, err)
}

func setEventAttrs(span trace.Span, items []*item) {
	if len(items) == 1 {
		span.SetAttributes(
			attribute.String("webhook.event.id", items[0].ev.ID),
			attribute.String("webhook.event.type", items[0].ev.Type),
		)
		return
	}
	span.SetAttributes(attribute.Int("webhook.event.count", len(items)))
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// short bounds a producer's value quoted in an error message.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
