package delivery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/events"
)

// Operational events (docs/architecture.md, "Operational events"). The
// three triggers live here, each where its fact becomes durable:
//
//   - endpoint.disabled: carryOut, once the registry confirmed a disable,
//     folds it in as a step of the pending disable (retried with it);
//   - endpoint.enabled: the resumer's sweep (announceEnabled) finds an
//     endpoint it watched since the system disabled it ACTIVE again;
//   - delivery.exhausted: afterAttempt, once the final failed attempt of a
//     delivery of a non-operational event was recorded.
//
// Each occurrence is folded (OpEvents.Fold, one atomic step) into the
// pending event of its (endpoint, type): counted once per occurrence key,
// due OpEventDelay after the first occurrence but never sooner than
// OpEventWindow after the previous event of that endpoint and type. The
// emitter loop (StartOpEvents) of every delivery process leases due ones,
// publishes each through ingestion's PublishSystemEvent with a key of its
// own (so a retry is one event), and only then marks it published: a burst
// yields at most one event per endpoint and type per window, its count
// field saying how many occurrences it stands for.

// Default timing of operational events.
const (
	// DefaultOpEventDelay gathers a burst before its first event.
	DefaultOpEventDelay = 2 * time.Second
	// DefaultOpEventWindow is the least time between two events of one
	// endpoint and type.
	DefaultOpEventWindow = time.Minute
	// OpEventPoll is how often the emitter looks for due events.
	OpEventPoll  = time.Second
	opEventLease = 30 * time.Second
)

// Occurrence is one fact an operational event reports.
type Occurrence struct {
	AccountID, EndpointID string
	Type                  string // an operational event type
	// Key identifies the occurrence: folding it again (a retry) counts
	// nothing.
	Key  string
	Data map[string]any // the event's data, without count
	// TraceParent is the trace context of what caused it: the event's
	// trace links to it.
	TraceParent string
}

// PendingOpEvent is a folded operational event claimed for publishing.
type PendingOpEvent struct {
	AccountID, EndpointID, Type string
	Data                        map[string]any // of the latest occurrence folded in before the claim
	Count                       int
	// Seq and Opened identify it; Key is the idempotency key derived from
	// them.
	Seq, Opened int64
	TraceParent string
	Tries       int
	LeaseUntil  time.Time
}

// Key is the event's idempotency key: one per pending event.
func (p PendingOpEvent) Key() string {
	return p.Type + ":" + p.EndpointID + ":" + strconv.FormatInt(p.Opened, 10) + ":" + strconv.FormatInt(p.Seq, 10)
}

// WatchedEndpoint is an endpoint the system disabled, watched until it is
// enabled again.
type WatchedEndpoint struct {
	AccountID, EndpointID string
	DisabledAt            time.Time
}

// OpEvents keeps occurrences folded into pending operational events, and
// the endpoints watched for re-enabling.
type OpEvents interface {
	// Fold counts o into the pending event of its endpoint and type,
	// unless an occurrence with its key was counted already; a first
	// occurrence makes the pending event due at max(now+delay, the last
	// publication+window). One atomic step.
	Fold(ctx context.Context, o Occurrence, now time.Time, delay, window time.Duration) error
	// ClaimOpEvents leases up to max due pending events until leaseUntil.
	// The count and data of a pending event are fixed at its first claim;
	// occurrences folded in later go to the next one.
	ClaimOpEvents(ctx context.Context, now, leaseUntil time.Time, max int) ([]PendingOpEvent, error)
	// OpEventPublished marks p published at now, if its lease is still
	// held: occurrences folded in since its claim open the next pending
	// event, due at now+window.
	OpEventPublished(ctx context.Context, p PendingOpEvent, now time.Time, window time.Duration) (bool, error)
	// RetryOpEvent makes p due at next with its tries, if its lease is
	// still held.
	RetryOpEvent(ctx context.Context, p PendingOpEvent, next time.Time) (bool, error)
	// WatchDisabled remembers an endpoint the system disabled at at.
	WatchDisabled(ctx context.Context, w WatchedEndpoint) error
	// Watched returns up to max watched endpoints.
	Watched(ctx context.Context, max int) ([]WatchedEndpoint, error)
	// Unwatch forgets w unless it was watched again (a later disable).
	Unwatch(ctx context.Context, w WatchedEndpoint) error
}

// SystemEvents publishes operational events (ingestion's
// PublishSystemEvent): stored once per key, fanned out to the account's
// subscribed endpoints but the one it is about.
type SystemEvents interface {
	PublishSystemEvent(ctx context.Context, accountID, eventType, endpointID, key string, data map[string]any) error
}

// opEventsOn reports whether operational events are wired.
func (d *Dispatcher) opEventsOn() bool { return d.deps.OpEvents != nil && d.deps.SystemEvents != nil }

// fold counts an occurrence in, a few tries (the fact it reports is
// recorded; nothing else would emit it), and wakes the emitter.
func (d *Dispatcher) fold(ctx context.Context, o Occurrence) error {
	var err error
	for i := range decideTries {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		err = d.deps.OpEvents.Fold(sctx, o, d.deps.Clock.Now(), d.cfg.OpEventDelay, d.cfg.OpEventWindow)
		cancel()
		if err == nil {
			d.kickOpEvents()
			return nil
		}
		if i+1 < decideTries {
			time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
		}
	}
	return err
}

func (d *Dispatcher) kickOpEvents() {
	select {
	case d.opEventKick <- struct{}{}:
	default:
	}
}

// exhausted folds in delivery.exhausted for a delivery whose final
// scheduled attempt failed and was recorded. Never about a delivery of an
// operational event (no loops), nor of a test delivery.
func (d *Dispatcher) exhausted(ctx context.Context, dl *Delivery, a *Attempt) {
	if !d.opEventsOn() || dl.Test || events.IsOperational(dl.EventType) {
		return
	}
	o := Occurrence{
		AccountID: dl.AccountID, EndpointID: dl.EndpointID, Type: "delivery.exhausted",
		Key: "exhausted:" + dl.ID + ":" + strconv.Itoa(a.Number),
		Data: map[string]any{
			"deliveryId": dl.ID, "eventId": dl.EventID, "eventType": dl.EventType, "endpointId": dl.EndpointID,
			"attempts": a.Number, "lastError": nonEmpty(a.Error, "the attempt failed"),
		},
		TraceParent: dl.TraceParent,
	}
	if err := d.fold(ctx, o); err != nil {
		d.deps.Logger.ErrorContext(ctx, "recording delivery.exhausted failed; the event is not emitted",
			"delivery_id", dl.ID, "endpoint_id", dl.EndpointID, "error", err.Error())
	}
}

// announceDisabled is the step of carryOut after the registry confirmed
// the disable: endpoint.disabled is folded in (once per decision: its key
// is the decision's time) and the endpoint watched for re-enabling.
func (d *Dispatcher) announceDisabled(ctx context.Context, p PendingDisable) error {
	if !d.opEventsOn() {
		return nil
	}
	o := Occurrence{
		AccountID: p.AccountID, EndpointID: p.EndpointID, Type: "endpoint.disabled",
		Key: "disabled:" + strconv.FormatInt(p.DecidedAt.UnixMilli(), 10),
		Data: map[string]any{
			"endpointId": p.EndpointID, "url": nonEmpty(p.URL, "(unknown)"), "reason": nonEmpty(p.Reason, "disabled by the system"),
			"lastError":  nonEmpty(p.LastError, nonEmpty(p.Reason, "disabled by the system")),
			"disabledAt": p.DecidedAt.UTC().Format(events.TimestampLayout),
		},
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := d.deps.OpEvents.WatchDisabled(wctx, WatchedEndpoint{AccountID: p.AccountID, EndpointID: p.EndpointID, DisabledAt: p.DecidedAt}); err != nil {
		return err
	}
	if err := d.deps.OpEvents.Fold(wctx, o, d.deps.Clock.Now(), d.cfg.OpEventDelay, d.cfg.OpEventWindow); err != nil {
		return err
	}
	d.kickOpEvents()
	return nil
}

// announceEnabled folds in endpoint.enabled for every watched endpoint
// that is ACTIVE again, and forgets watched endpoints that are gone or
// paused by their owner. The resumer runs it with every sweep.
func (s *Service) announceEnabled(ctx context.Context) error {
	d := s.d
	if !d.opEventsOn() {
		return nil
	}
	watched, err := d.deps.OpEvents.Watched(ctx, MaxParkedSweep)
	if err != nil {
		return fmt.Errorf("reading disabled endpoints: %w", err)
	}
	for _, w := range watched {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		t, err := d.deps.Targets.Target(lctx, w.AccountID, w.EndpointID)
		cancel()
		switch {
		case errors.Is(err, apierr.ErrNotFound):
		case err != nil:
			continue // looked at again on the next sweep
		case t.Status == EndpointDisabled:
			continue
		case t.Status == EndpointActive:
			o := Occurrence{
				AccountID: w.AccountID, EndpointID: w.EndpointID, Type: "endpoint.enabled",
				Key:  "enabled:" + strconv.FormatInt(w.DisabledAt.UnixMilli(), 10),
				Data: map[string]any{"endpointId": w.EndpointID, "url": nonEmpty(t.URL, "(unknown)")},
			}
			if err := d.fold(ctx, o); err != nil {
				return fmt.Errorf("recording endpoint.enabled of %s: %w", w.EndpointID, err)
			}
		}
		if err := d.deps.OpEvents.Unwatch(ctx, w); err != nil {
			return fmt.Errorf("forgetting disabled endpoint %s: %w", w.EndpointID, err)
		}
	}
	return nil
}

// StartOpEvents starts the loop that publishes due operational events, in
// this process, until ctx ends or the returned stop is called (it waits,
// within its ctx, for the publication in progress). poll is OpEventPoll
// when 0.
func (d *Dispatcher) StartOpEvents(ctx context.Context, poll time.Duration) (stop func(context.Context)) {
	if poll <= 0 {
		poll = OpEventPoll
	}
	return pollLoop[PendingOpEvent]{
		what: "operational events", batch: 32, kick: d.opEventKick,
		// Due events folded with a delay: look again within the poll.
		pause: func() time.Duration { return min(poll, d.cfg.OpEventDelay) },
		claim: func(ctx context.Context, now time.Time, max int) ([]PendingOpEvent, error) {
			return d.deps.OpEvents.ClaimOpEvents(ctx, now, now.Add(opEventLease), max)
		},
		handle: d.publishOpEvent,
	}.start(ctx, d, d.opEventsOn())
}

// publishOpEvent publishes one claimed operational event in a trace of
// its own, linked to the trace of its latest occurrence.
func (d *Dispatcher) publishOpEvent(ctx context.Context, p PendingOpEvent) {
	log := d.deps.Logger
	data := maps.Clone(p.Data)
	if p.Count > 1 {
		data[events.CountField] = p.Count
	}
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithAttributes(
		attribute.String("webhook.event.type", p.Type),
		attribute.String("webhook.endpoint.id", p.EndpointID),
		attribute.Int("webhook.operational.count", max(p.Count, 1)),
	)}
	if p.TraceParent != "" {
		cause := trace.SpanContextFromContext(d.prop.Extract(ctx, propagation.MapCarrier{"traceparent": p.TraceParent}))
		if cause.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: cause}))
		}
	}
	sctx, span := d.deps.Tracer.Start(ctx, "webhook.operational_event", opts...)
	pctx, cancel := context.WithTimeout(sctx, lookupTimeout*3)
	err := d.deps.SystemEvents.PublishSystemEvent(pctx, p.AccountID, p.Type, p.EndpointID, p.Key(), data)
	cancel()
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()

	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer wcancel()
	args := []any{"account_id", p.AccountID, "endpoint_id", p.EndpointID, "type", p.Type, "count", max(p.Count, 1)}
	if err != nil {
		next := d.deps.Clock.Now()
		if ctx.Err() == nil {
			next = next.Add(min(disableBackoff<<min(p.Tries, 16), maxDisableBackoff))
			p.Tries++
			log.WarnContext(ctx, "publishing an operational event failed; retried", append(args, "tries", p.Tries, "error", err.Error())...)
		}
		if _, serr := d.deps.OpEvents.RetryOpEvent(wctx, p, next); serr != nil {
			log.ErrorContext(ctx, "saving an operational event's retry failed; it is retried when its lease ends", append(args, "error", serr.Error())...)
		}
		return
	}
	if _, err := d.deps.OpEvents.OpEventPublished(wctx, p, d.deps.Clock.Now(), d.cfg.OpEventWindow); err != nil {
		log.ErrorContext(ctx, "marking an operational event published failed; it is published again under the same key", append(args, "error", err.Error())...)
		return
	}
	log.InfoContext(sctx, "operational event published", args...)
}

func nonEmpty(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}
