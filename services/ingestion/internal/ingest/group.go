package ingest

// Group commit of concurrent single publishes.
//
// Producers publish one event per call, from many workers at once. Run
// alone, every call would walk its own sequence of round trips (claim,
// store, index, Schedule, mark), each an fsync'd Redis write. Publish
// instead validates its event on its own, in the caller's goroutine, and
// then hands it to a group: the calls in flight together run the persist
// and fanout stages once, exactly as one PublishBatch does, and each caller
// gets its own answer.
//
// Gathering follows pkg/autobatch: nothing waits on purpose. A call that
// finds a free sender goes out at once, alone; calls that arrive while
// groupSenders groups are on the wire gather and go out together as soon
// as one of them is done. Under load a publish costs a fraction of the
// round trips; a lone publish costs what it did before.
//
// What each caller gets is its own:
//   - validation errors: validate runs per call before grouping, so an
//     invalid event fails only its caller (a batch is all or nothing; a
//     group is not);
//   - idempotency: repeats of one key or id inside a group resolve as they
//     do inside a batch (the first in group order is the original; later
//     ones get its event and Duplicate);
//   - errors of one event (an id that belongs to another account, stored
//     or in the same group): persist refuses only that event (item.refused)
//     and the rest of the group goes on; an id shared with another account's
//     event of the same group is published alone after it;
//   - a failure of the shared work (Redis, the registry, delivery's
//     Schedule, the group's deadline) fails every caller of the group with
//     Unavailable: none is acknowledged, and each retries with its key;
//   - a caller whose ctx ends first gets ctx's error; the group goes on
//     (its event may then be stored and delivered, like any publish whose
//     answer was lost: the producer's retry with the same key finds it).
//
// Order: a publish is acknowledged only after its group's writes are done,
// so a publish acknowledged before another one is called is ordered before
// it. Publishes in flight together are ordered as their events stand in
// their group's write (the order in which the calls reached the group);
// groups in flight at the same time are ordered by their writes to the
// event store (storeNew, one write per group). A later sequencer of
// ordered delivery assigns its sequence in that write.

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/autobatch"
)

const (
	// maxGroup bounds the events of one group: as many as one batch.
	maxGroup = MaxBatch
	// groupSenders is how many groups may be on the wire at once.
	groupSenders = 2
	// groupTimeout bounds the work of one group. It serves many callers,
	// so it runs under none of their contexts.
	groupTimeout = 15 * time.Second
)

// groupCall is one Publish waiting for its group.
type groupCall struct {
	it     *item             // validated, not yet persisted; never changed by the group
	caller trace.SpanContext // the caller's span: the group's span links it
}

type grouper = autobatch.Batcher[groupCall, Result]

func newGrouper(s *Service) *grouper {
	return autobatch.New(maxGroup, groupSenders, groupTimeout, s.publishGroup)
}

// publishOne validates one event in the caller's goroutine and then
// publishes it with the calls in flight with it.
func (s *Service) publishOne(ctx context.Context, r Request) (Result, error) {
	c, err := s.validateOne(ctx, r)
	if err != nil {
		return Result{}, err
	}
	return s.groups.Do(ctx, c)
}

// PublishEach publishes events that arrived together from different
// callers (the gateway's gathered REST publishes) as one group, without
// waiting for the grouper: each event is validated on its own, under its
// own context (ctxs[i]: its caller's trace), and answered on its own, as if
// its Publish had met the others in a group. The group runs under none of
// the contexts, within groupTimeout, like the grouper's groups.
func (s *Service) PublishEach(ctxs []context.Context, rs []Request) ([]Result, []error) {
	res := make([]Result, len(rs))
	errs := make([]error, len(rs))
	calls := make([]groupCall, 0, len(rs))
	members := make([]int, 0, len(rs))
	for i, r := range rs {
		c, err := s.validateOne(ctxs[i], r)
		if err != nil {
			errs[i] = err
			continue
		}
		calls = append(calls, c)
		members = append(members, i)
	}
	if len(calls) == 0 {
		return res, errs
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	gres, gerrs := s.publishGroup(ctx, calls)
	for k, i := range members {
		res[i], errs[i] = gres[k], gerrs[k]
	}
	return res, errs
}

// validateOne validates one event for a group, in its caller's trace.
func (s *Service) validateOne(ctx context.Context, r Request) (groupCall, error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	sc := trace.SpanContextFromContext(ctx)
	var traceID string
	if sc.HasTraceID() {
		traceID = sc.TraceID().String()
	}
	items, err := s.validate(ctx, []Request{r}, false, now, traceID)
	if err != nil {
		return groupCall{}, err
	}
	stampTrace(ctx, items)
	return groupCall{it: items[0], caller: sc}, nil
}

// stampTrace records the caller's W3C trace context on its items: their
// deliveries join the caller's trace whatever Schedule call carries them.
func stampTrace(ctx context.Context, items []*item) {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	tp, ts := carrier.Get("traceparent"), carrier.Get("tracestate")
	for _, it := range items {
		it.traceParent, it.traceState = tp, ts
	}
}

// publishGroup runs the persist and fanout stages once for a group of
// validated calls and answers each (autobatch.Func).
func (s *Service) publishGroup(ctx context.Context, calls []groupCall) ([]Result, []error) {
	res := make([]Result, len(calls))
	errs := make([]error, len(calls))

	ctx, span := s.groupSpan(ctx, calls)
	defer span.End()

	members, items, alone := gather(calls)
	err := s.commit(ctx, items)
	switch {
	case err == nil:
		for i, k := range members {
			root := items[items[i].root]
			if root.refused != nil {
				errs[k] = root.refused
				continue
			}
			res[k] = Result{Event: root.ev, Duplicate: items[i].root != i || root.stored}
		}
	case sharedFailure(err):
		err = asUnavailable(err)
		end(span, err)
		for _, k := range members {
			errs[k] = err
		}
	default:
		// An error that persist could not pin on one event (refused) would
		// fail them all: publish each alone instead, in group order, so
		// that the error reaches only its caller.
		alone = append(members, alone...)
	}
	for _, k := range alone {
		res[k], errs[k] = s.publishAlone(ctx, calls[k])
	}
	return res, errs
}

// groupSpan starts the span of a group's shared work: a child of the first
// caller's span, linked to every caller's.
func (s *Service) groupSpan(ctx context.Context, calls []groupCall) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, len(calls))
	for _, c := range calls {
		if c.caller.IsValid() {
			links = append(links, trace.Link{SpanContext: c.caller})
		}
	}
	if first := calls[0].caller; first.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, first)
	}
	return s.tracer.Start(ctx, "ingest.group", trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("webhook.group.size", len(calls))))
}

// gather makes the items of a group from its calls, each a copy (a failed
// group leaves the calls as they were, to be published alone), and links
// repeats like validate does within a batch. It returns, per item, the
// index of its call (members), and the calls that cannot join the group
// (alone): an id that another account's event of the group already uses,
// which the stored event decides once the group is done.
func gather(calls []groupCall) (members []int, items []*item, alone []int) {
	byKey := make(map[string]int) // account + key -> root
	byID := make(map[string]int)  // producer-chosen id -> root
	for k, c := range calls {
		i := len(items)
		it := clone(c.it)
		it.idx, it.root = i, i
		r := it.req
		acctKey := r.AccountID + "\x00" + it.key
		if j, ok := byKey[acctKey]; ok && it.key != "" {
			it.root = j
		}
		if j, ok := byID[r.ID]; ok && r.ID != "" {
			if items[j].req.AccountID != r.AccountID {
				alone = append(alone, k)
				continue
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
		members = append(members, k)
		items = append(items, it)
	}
	return members, items, alone
}

// clone copies a validated item and its event.
func clone(it *item) *item {
	c := *it
	ev := *it.ev
	c.ev = &ev
	return &c
}

// commit runs the stages after validation for items whose idx and root are
// set: persist, fanout, and the count of new events.
func (s *Service) commit(ctx context.Context, items []*item) error {
	if len(items) == 0 {
		return nil
	}
	if err := s.persist(ctx, items, s.now().UTC().Truncate(time.Millisecond), true); err != nil {
		return err
	}
	if err := s.fanout(ctx, items); err != nil {
		return err
	}
	s.countPublished(ctx, items)
	return nil
}

// publishAlone publishes one call's event as a group of one.
func (s *Service) publishAlone(ctx context.Context, c groupCall) (Result, error) {
	it := clone(c.it)
	it.idx, it.root = 0, 0
	if err := s.commit(ctx, []*item{it}); err != nil {
		if sharedFailure(err) {
			return Result{}, asUnavailable(err)
		}
		return Result{}, err
	}
	if it.refused != nil {
		return Result{}, it.refused
	}
	return Result{Event: it.ev, Duplicate: it.stored}, nil
}

// sharedFailure tells a failure of the group's shared work (a dependency,
// the group's deadline) from an error about one event.
func sharedFailure(err error) bool {
	return errors.Is(err, apierr.ErrUnavailable) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// asUnavailable makes the group's own deadline an Unavailable answer: no
// caller's ctx ended, the shared work did not finish in time.
func asUnavailable(err error) error {
	if errors.Is(err, apierr.ErrUnavailable) {
		return err
	}
	return apierr.Wrap(apierr.ErrUnavailable, "publishing did not finish in time (%v); the event is not acknowledged: retry with the same idempotency key", err)
}
