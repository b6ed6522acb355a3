package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	// OrderingKey optionally orders the event among others for endpoints
	// ordered by key (eventstore.Event.LineKey: unset, data.uploadId, else
	// the account).
	OrderingKey string

	// Set by PublishSystem only (system.go): an operational event, not
	// delivered to the endpoint exclude.
	system  bool
	exclude string
}

// Result is the outcome of publishing one event.
type Result struct {
	Event *eventstore.Event
	// Duplicate is set when the event repeats an earlier one (same
	// idempotency key or id): Event is then the original.
	Duplicate bool
}

// item is one event of a publish call on its way through the stages.
// validate makes it; persist's resolve and mergeSameEvent settle ev,
// stored, fanout and root; fanout and publish read them.
type item struct {
	idx    int
	prefix string // field prefix of error messages: "" or "events[i]."
	req    Request
	ev     *eventstore.Event // the new event, or the stored original
	key    string            // idempotency key: the producer's, else its chosen id
	root   int               // first item of the call naming the same event (itself if none)
	stored bool              // ev was already stored by an earlier call
	fanout bool              // ev's deliveries still have to be scheduled
	listed bool              // ev is in its account's event list (Index.Add) already
	// refused is this event's own refusal (an id of another account's
	// event, say) when the items answer separately (a group of single
	// publishes): the event is left out of the rest of the work.
	refused error

	traceParent, traceState string // W3C trace context of the publish call (stampTrace)
}

// Publish validates, stores and fans out one event. It succeeds only once
// the event and all its deliveries are durably scheduled. Concurrent calls
// share the work after validation (group commit: see group.go); each
// caller's answer is its own.
func (s *Service) Publish(ctx context.Context, r Request) (Result, error) {
	return s.publishOne(ctx, r)
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
	stampTrace(ctx, items)
	if err := s.persist(ctx, items, now, false); err != nil {
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
	case len(r.OrderingKey) > events.MaxOrderingKeyBytes:
		return nil, apierr.Invalid(prefix+"ordering_key", "must be at most %d bytes, got %d", events.MaxOrderingKeyBytes, len(r.OrderingKey))
	case !printable(r.OrderingKey):
		return nil, apierr.Invalid(prefix+"ordering_key", "must be UTF-8 text without control characters, got %q", short(r.OrderingKey))
	}
	if err := refuseOperational(r, prefix); err != nil {
		return nil, err
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
		IdempotencyKey: r.IdempotencyKey, UploadID: upload, OrderingKey: r.OrderingKey, TraceID: traceID,
	}
	return &item{prefix: prefix, req: r, ev: ev, key: key, fanout: true}, nil
}

// printable reports whether s is UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
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

// persist applies idempotency and writes the new events. Each stage takes
// what the ones before it return. The idempotency claim (claimKeys) and the
// write (storeNew) are separate steps, so another call can store the same
// event in between: storeNew's write is create-only and settles that race.
//
// With separate set (a group of single publishes), an error of one event
// that is not a shared failure refuses only that event (item.refused)
// and the others go on; otherwise it fails the whole call.
func (s *Service) persist(ctx context.Context, items []*item, now time.Time, separate bool) (err error) {
	ctx, span := s.tracer.Start(ctx, "ingest.store")
	setEventAttrs(span, items)
	defer func() { end(span, err) }()

	roots := distinctRoots(items)
	owners, err := s.claimKeys(ctx, roots)
	if err != nil {
		return err
	}
	originals, err := s.findOriginals(ctx, roots, owners)
	if err != nil {
		return err
	}
	for j, it := range roots {
		if err := refuse(it, s.resolve(it, owners[j].EventID, originals[j]), separate); err != nil {
			return err
		}
	}
	distinct := mergeSameEvent(items, roots)
	if err := s.storeNew(ctx, now, distinct, separate); err != nil {
		return err
	}
	return s.indexForFanout(ctx, now, distinct)
}

// distinctRoots returns the items that are their own root: one per event
// the call names, as far as validate could tell.
func distinctRoots(items []*item) []*item {
	var roots []*item
	for _, it := range items {
		if it.root == it.idx {
			roots = append(roots, it)
		}
	}
	return roots
}

// claimKeys claims each root's idempotency key (the producer's, else its
// chosen id) for the root's new event. It returns, per root, the event
// that owns the key: the root's own id, New, when the claim succeeded or
// the root has no key.
func (s *Service) claimKeys(ctx context.Context, roots []*item) ([]KeyOwner, error) {
	owners := make([]KeyOwner, len(roots))
	var claims []Claim
	var claimed []int // index in roots of each claim
	for j, it := range roots {
		owners[j] = KeyOwner{EventID: it.ev.ID, New: true}
		if it.key != "" {
			claims = append(claims, Claim{AccountID: it.ev.AccountID, Key: it.key, EventID: it.ev.ID, At: it.ev.CreateTime})
			claimed = append(claimed, j)
		}
	}
	if len(claims) == 0 {
		return owners, nil
	}
	got, err := s.index.Claim(ctx, claims)
	if err != nil {
		return nil, unavailable(ctx, "claiming idempotency keys", err)
	}
	for c, j := range claimed {
		owners[j] = got[c]
	}
	return owners, nil
}

// findOriginals reads, per root, the event stored under its owner's id
// where there may be one: the key belongs to an earlier event, or the
// producer chose the id. An entry is nil when nothing is stored under that
// id or nothing had to be read.
//
// Redis is read first, then history: the archiver deletes an event from
// Redis only after history committed it, so an event missing from Redis
// is in history if it was ever stored. When history is unreachable, a key
// held by an earlier event fails the publish (Unavailable: the original
// may be archived, and a second event must never be stored under its
// id); a key taken just now (a new producer-chosen id) does not wait for
// history, which is then consulted only to refuse another account's id.
func (s *Service) findOriginals(ctx context.Context, roots []*item, owners []KeyOwner) ([]*eventstore.Event, error) {
	var look []int // index in roots of each read
	for j, it := range roots {
		if owners[j].EventID != it.ev.ID || it.req.ID != "" {
			look = append(look, j)
		}
	}
	originals := make([]*eventstore.Event, len(roots))
	err := parallel(ctx, len(look), 16, func(ctx context.Context, n int) error {
		j := look[n]
		e, err := s.store.Get(ctx, owners[j].EventID)
		if errors.Is(err, apierr.ErrNotFound) && s.history != nil {
			e, err = s.history.FindEvent(ctx, owners[j].EventID)
			if errors.Is(err, apierr.ErrUnavailable) && owners[j].New && owners[j].EventID == roots[j].ev.ID {
				err = apierr.NotFound("event", owners[j].EventID)
			}
		}
		if errors.Is(err, apierr.ErrNotFound) {
			return nil
		}
		if err != nil {
			return unavailable(ctx, "reading the original event", err)
		}
		originals[j] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return originals, nil
}

// resolve decides which event a root publishes, from the owner of its key
// and the original stored under the owner's id (nil: none). It sets it.ev,
// it.stored and it.fanout.
func (s *Service) resolve(it *item, owner string, original *eventstore.Event) error {
	switch {
	case original == nil && owner != it.ev.ID:
		// The key was claimed by a call that stopped before storing its
		// event, or that has not stored it yet: build the event under that
		// id. storeNew's create-only write decides which call's is stored.
		payload, err := s.envelope(owner, it.ev.Type, it.ev.CreateTime, it.req.Data, it.prefix)
		if err != nil {
			return err
		}
		it.ev.ID, it.ev.Payload = owner, payload
	case original == nil:
		// A new event: a key claimed just now, a new producer-chosen id,
		// or no key at all.
	default:
		return s.adoptStored(it, original)
	}
	return nil
}

// adoptStored makes a root publish the event already stored under its id:
// another account's is refused; the account's own is the result, with its
// stored body, and is fanned out again only if its fan-out was not
// recorded (scheduling is an upsert downstream).
func (s *Service) adoptStored(it *item, original *eventstore.Event) error {
	if original.AccountID != it.ev.AccountID {
		return apierr.Wrap(apierr.ErrAlreadyExists, "%sid: event %s belongs to another account; publish with another id", it.prefix, original.ID)
	}
	it.ev, it.stored, it.fanout = original, true, !original.FanoutDone
	return nil
}

// mergeSameEvent makes roots that resolved to the same event id one event:
// the first keeps it; later ones point to it (it.root) and fan out nothing.
// Every item's root then names a root of a distinct event. It returns those
// roots, one per event, in order.
func mergeSameEvent(items, roots []*item) []*item {
	byID := make(map[string]int, len(roots))
	var distinct []*item
	for _, it := range roots {
		if it.refused != nil {
			continue
		}
		if j, ok := byID[it.ev.ID]; ok {
			it.root, it.fanout = j, false
			continue
		}
		byID[it.ev.ID] = it.idx
		distinct = append(distinct, it)
	}
	for _, it := range items {
		it.root = items[it.root].root
	}
	return distinct
}

// storeNew writes the events not stored yet, create-only: an event that
// another call stored after this one looked (two publishes of one key or
// id at once, from one account or two) is not overwritten but resolved as
// an original (adoptStored), so under any concurrency one key or id is one
// event with one body, and every caller answers with it.
func (s *Service) storeNew(ctx context.Context, now time.Time, distinct []*item, separate bool) error {
	var put []*item
	var evs []*eventstore.Event
	for _, it := range distinct {
		if !it.stored {
			put = append(put, it)
			evs = append(evs, it.ev)
		}
	}
	if len(evs) == 0 {
		return nil
	}
	var found []*eventstore.Event
	var err error
	ls, listing := s.store.(ListingStore)
	if listing {
		found, err = ls.CreateManyListed(ctx, now, evs)
	} else {
		found, err = s.store.CreateMany(ctx, evs)
	}
	if err != nil {
		return unavailable(ctx, "storing the event", err)
	}
	for j, it := range put {
		it.listed = listing
		if found[j] == nil {
			continue
		}
		if err := refuse(it, s.adoptStored(it, found[j]), separate); err != nil {
			return err
		}
	}
	return nil
}

// refuse returns err, or, when the items answer separately and err is this
// event's own (not a shared failure), records it as the item's refusal,
// leaves the event out of the fan-out and returns nil.
func refuse(it *item, err error, separate bool) error {
	if err == nil || !separate || sharedFailure(err) {
		return err
	}
	it.refused, it.fanout = err, false
	return nil
}

// indexForFanout lists under their accounts the events whose fan-out is
// still to do: the new ones, and stored ones again after a crash before
// their fan-out was recorded (adding is idempotent).
func (s *Service) indexForFanout(ctx context.Context, now time.Time, distinct []*item) error {
	var index []*eventstore.Event
	for _, it := range distinct {
		if it.fanout && !it.listed {
			index = append(index, it.ev)
		}
	}
	if len(index) == 0 {
		return nil
	}
	if err := s.index.Add(ctx, now, index); err != nil {
		return unavailable(ctx, "indexing the event", err)
	}
	return nil
}

// group is the events of one (account, type) pair and its subscribers.
type group struct {
	account, eventType string
	items              []*item
	endpoints          []string
	ordered            []string // those of endpoints ordered by key
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
		eps, ordered, err := s.subs.ListSubscribers(ctx, g.account, g.eventType)
		if err != nil {
			return unavailable(ctx, "looking up subscribers", err)
		}
		g.endpoints, g.ordered = eps, ordered
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
				if ep == it.req.exclude { // an operational event never goes to the endpoint it is about
					continue
				}
				si := ScheduleItem{EventID: it.ev.ID, EndpointID: ep, TraceParent: it.traceParent, TraceState: it.traceState}
				if slices.Contains(g.ordered, ep) {
					si.OrderingKey = it.ev.LineKey()
				}
				if it.stored { // a repeat: the endpoint's ordering may have changed since
					si.RepeatOrderingKey = it.ev.LineKey()
				}
				all = append(all, si)
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
			if it.req.exclude != "" && slices.Contains(g.endpoints, it.req.exclude) {
				counts[it]--
			}
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
	if errors.As(err, &inv) || strings.Contains(err.Error(), retryHint) {
		return err
	}
	return apierr.Wrap(apierr.ErrUnavailable, "%s failed (%v); %s", what, err, retryHint)
}

// retryHint ends the message of every publish the producer should retry:
// a dependency's own Unavailable (the registry's, say) gets it too.
const retryHint = "the event is not acknowledged: retry with the same idempotency key"

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
