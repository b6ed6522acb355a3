package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/services/delivery/internal/mailer"
)

// Timing of the pipeline around the HTTP request.
const (
	// DefaultTimeout is the per-attempt HTTP timeout (DELIVERY_TIMEOUT's
	// default): the seed's "respond within 5 seconds".
	DefaultTimeout = 5 * time.Second
	// DefaultLeaseMargin is how much longer than the HTTP timeout a claim
	// is leased: enough for the lookups before the request and the write
	// after.
	DefaultLeaseMargin = 10 * time.Second
	// lookupTimeout bounds each registry or event-store lookup.
	lookupTimeout = 3 * time.Second
	// recordTimeout bounds the write of an outcome.
	recordTimeout = 3 * time.Second
	// deferDelay is how long a delivery waits when a dependency (registry,
	// event store) does not answer; no attempt is counted.
	deferDelay = 5 * time.Second
)

// Config is the deployment's delivery policy.
type Config struct {
	Retry RetryPolicy
	// Timeout is the per-attempt HTTP timeout (DefaultTimeout when 0).
	Timeout time.Duration
	// LeaseMargin is added to Timeout to make a claim's lease
	// (DefaultLeaseMargin when 0).
	LeaseMargin time.Duration
	// OpEventDelay and OpEventWindow time operational events
	// (DefaultOpEventDelay, DefaultOpEventWindow when 0; opevents.go).
	OpEventDelay, OpEventWindow time.Duration
}

// Deps are the dispatcher's collaborators.
type Deps struct {
	Queue   Queue
	History History
	Targets Targets
	Events  Events
	// Archived, when set, is asked for the payload of an event Events no
	// longer holds (moved to history while its delivery was revived)
	// before the delivery is canceled.
	Archived ArchivedEvents
	Sender   Sender
	Clock    Clock        // SystemClock when nil
	Tracer   trace.Tracer // the global provider's when nil
	Logger   *slog.Logger // slog.Default() when nil
	// Failure handling (auto-disable, 410, notices); each optional.
	Stats      EndpointStats
	Registry   Registry
	Mailer     mailer.Mailer          // synchronous: its error makes the disabler retry the notice
	Invalidate func(accountID string) // forgets cached endpoints after a disable

	// EventAccounts is required by Schedule, which refuses every call
	// without it.
	EventAccounts EventAccounts
	// Limits makes endpoint concurrency and rate limits hold for the whole
	// deployment (redisqueue.Limits); per process when nil.
	Limits EndpointLimits
	// Operational events (opevents.go); both or neither.
	OpEvents     OpEvents
	SystemEvents SystemEvents
	// Erase serves Service.EraseAccount (the registry's erasure); it
	// answers Unavailable without it.
	Erase AccountEraser
}

// Dispatcher runs claimed deliveries through the pipeline
// prepare → send → record.
type Dispatcher struct {
	cfg         Config
	deps        Deps
	prop        propagation.TraceContext
	disableKick chan struct{} // wakes the disabler after a decision
	opEventKick chan struct{} // wakes the operational-event emitter after a fold
	rates       rateLimits
}

// NewDispatcher returns a Dispatcher.
func NewDispatcher(cfg Config, deps Deps) *Dispatcher {
	if deps.Clock == nil {
		deps.Clock = SystemClock{}
	}
	if deps.Tracer == nil {
		deps.Tracer = otel.GetTracerProvider().Tracer("github.com/voxscriber/webhooks/services/delivery")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.LeaseMargin <= 0 {
		cfg.LeaseMargin = DefaultLeaseMargin
	}
	if cfg.OpEventDelay <= 0 {
		cfg.OpEventDelay = DefaultOpEventDelay
	}
	if cfg.OpEventWindow <= 0 {
		cfg.OpEventWindow = DefaultOpEventWindow
	}
	return &Dispatcher{cfg: cfg, deps: deps, disableKick: make(chan struct{}, 1), opEventKick: make(chan struct{}, 1)}
}

// LeaseUntil is the lease of a claim made at now.
func (d *Dispatcher) LeaseUntil(now time.Time) time.Time {
	return now.Add(d.cfg.Timeout + d.cfg.LeaseMargin)
}

// leaseReserve is kept free at the end of a lease for the record stage: a
// job runs until LeaseUntil minus this, and starts its request only if the
// whole timeout fits before then, so a worker never sends after another may
// have claimed the same delivery.
func (d *Dispatcher) leaseReserve() time.Duration { return d.cfg.LeaseMargin * 3 / 10 }

// prepared is what the send stage needs.
type prepared struct {
	target *Target
	body   []byte
}

// Dispatch runs one claimed job through the pipeline and returns the
// outcome recorded. The error wraps errAborted when the job must be
// released instead of recorded (ctx ended: the worker is stopping), or is
// the record stage's.
func (d *Dispatcher) Dispatch(ctx context.Context, job Job) (*Outcome, error) {
	return d.dispatch(ctx, job, nil, false)
}

// dispatch is Dispatch calling sent (when not nil) as soon as the HTTP
// request has ended, before the outcome is recorded: the endpoint's
// concurrency place is free from then on. With take, the end of an
// ordered delivery leases the next one of its line to the caller
// (Outcome.Handoff), who must run or release it.
func (d *Dispatcher) dispatch(ctx context.Context, job Job, sent func(), take bool) (*Outcome, error) {
	p, o := d.prepare(ctx, job)
	if ctx.Err() != nil {
		return nil, errAborted
	}
	if o == nil {
		o = d.checkRate(ctx, &job.Delivery, p.target)
	}
	if o == nil {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d.cfg.Timeout {
			return nil, fmt.Errorf("%w: lease too short to start the request", errAborted)
		}
		att, resp := d.send(d.parentContext(ctx, &job.Delivery), p, &job.Delivery, job.Delivery.Attempts+1)
		if sent != nil {
			sent()
		}
		if ctx.Err() != nil {
			return nil, errAborted // the request was cut short by shutdown, not by the receiver
		}
		o = d.decide(job, att, resp)
		saved, err := d.record(ctx, job, o, take)
		if err != nil {
			return o, err
		}
		if saved { // decide on recorded outcomes only: not when the lease was lost
			d.afterAttempt(ctx, job, p.target, o)
		}
		return o, nil
	}
	_, err := d.record(ctx, job, o, take)
	return o, err
}

// prepare looks up the endpoint and the payload. A non-nil outcome ends
// the job without an attempt: canceled, parked, or deferred when a
// dependency did not answer.
func (d *Dispatcher) prepare(ctx context.Context, job Job) (*prepared, *Outcome) {
	dl := &job.Delivery
	now := d.deps.Clock.Now()
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	// Under the event's trace: an uncached lookup is part of that trace.
	t, err := d.deps.Targets.Target(d.parentContext(lctx, dl), dl.AccountID, dl.EndpointID)
	switch {
	case errors.Is(err, apierr.ErrNotFound):
		return nil, &Outcome{Status: StatusCanceled, Now: now,
			LastError: fmt.Sprintf("endpoint %s no longer exists", dl.EndpointID)}
	case err != nil:
		return nil, d.deferred(ctx, dl, now, "registry lookup failed", err)
	case t.Status != EndpointActive:
		return nil, &Outcome{Status: StatusParked, Now: now,
			LastError: fmt.Sprintf("endpoint %s is %s; the delivery resumes when it is enabled", dl.EndpointID, t.Status)}
	}
	body, err := d.body(lctx, dl, job.Payload)
	switch {
	case errors.Is(err, apierr.ErrNotFound):
		return nil, &Outcome{Status: StatusCanceled, Now: now,
			LastError: fmt.Sprintf("event %s is no longer stored", dl.EventID)}
	case err != nil:
		return nil, d.deferred(ctx, dl, now, "event lookup failed", err)
	}
	return &prepared{target: t, body: body}, nil
}

// body is the request body of a delivery: its own (Send Test), else its
// event's payload: read already (read, Job.Payload), else from the live
// tier, else from history (a delivery revived, or read, after the archiver
// moved its done event).
func (d *Dispatcher) body(ctx context.Context, dl *Delivery, read []byte) ([]byte, error) {
	if len(dl.Body) > 0 {
		return dl.Body, nil
	}
	if len(read) > 0 {
		return read, nil
	}
	body, err := d.deps.Events.Payload(ctx, dl.EventID)
	if errors.Is(err, apierr.ErrNotFound) && d.deps.Archived != nil {
		body, err = d.deps.Archived.ArchivedPayload(ctx, dl.AccountID, dl.EventID)
	}
	return body, err
}

func (d *Dispatcher) deferred(ctx context.Context, dl *Delivery, now time.Time, what string, err error) *Outcome {
	if ctx.Err() == nil {
		d.deps.Logger.WarnContext(ctx, what+"; delivery deferred", "delivery_id", dl.ID, "error", err.Error())
	}
	return &Outcome{Status: StatusPending, Next: now.Add(deferDelay), Now: now}
}

// parentContext returns ctx carrying the trace context stored when the
// delivery was scheduled, so every attempt joins the event's trace.
func (d *Dispatcher) parentContext(ctx context.Context, dl *Delivery) context.Context {
	if dl.TraceParent == "" {
		return ctx
	}
	return d.prop.Extract(ctx, propagation.MapCarrier{"traceparent": dl.TraceParent, "tracestate": dl.TraceState})
}

// send makes attempt number n inside a "webhook.attempt" client span, child
// of the span in ctx. Scheduled attempts and Send Test both come here.
func (d *Dispatcher) send(ctx context.Context, p *prepared, dl *Delivery, n int) (Attempt, Response) {
	start := d.deps.Clock.Now()
	ctx, span := d.deps.Tracer.Start(ctx, "webhook.attempt",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("webhook.event.id", dl.EventID),
			attribute.String("webhook.event.type", dl.EventType),
			attribute.String("webhook.endpoint.id", dl.EndpointID),
			attribute.String("webhook.delivery.id", dl.ID),
			attribute.Int("webhook.attempt", n),
			attribute.String("http.request.method", "POST"),
			attribute.String("url.full", p.target.URL),
		))
	if dl.OrderingKey != "" {
		// How long this delivery waited behind earlier ones of its key.
		span.SetAttributes(attribute.String("webhook.ordering.key", dl.OrderingKey),
			attribute.Int64("webhook.ordering.waited_ms", dl.Waited.Milliseconds()))
	}
	resp := d.deps.Sender.Send(ctx, Request{
		URL: p.target.URL, Body: p.body, EventID: dl.EventID, EventType: dl.EventType,
		Attempt: n, Time: start, Secrets: p.target.Secrets, Headers: p.target.Headers,
	})
	etype, msg := Classify(resp, d.cfg.Timeout)
	if resp.StatusCode != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	}
	span.SetAttributes(attribute.Int64("webhook.latency_ms", resp.Latency.Milliseconds()))
	if etype != ErrorNone {
		span.SetAttributes(attribute.String("error.type", string(etype)))
		span.SetStatus(codes.Error, msg)
	}
	sc := span.SpanContext()
	span.End()
	att := Attempt{
		Number: n, Start: start, StatusCode: resp.StatusCode, Latency: resp.Latency,
		ErrorType: etype, Error: msg, Response: string(resp.Body),
		RequestHeaders: resp.RequestHeaders, URL: p.target.URL,
	}
	if sc.IsValid() {
		att.TraceID, att.SpanID = sc.TraceID().String(), sc.SpanID().String()
	}
	return att, resp
}

// decide turns an attempt into the job's outcome: success, another attempt
// later, or final failure.
func (d *Dispatcher) decide(job Job, att Attempt, resp Response) *Outcome {
	now := d.deps.Clock.Now()
	o := &Outcome{Attempt: &att, Now: now}
	if att.Succeeded() {
		o.Status = StatusSucceeded
		return o
	}
	if resp.StatusCode == http.StatusGone {
		o.Status = StatusParked // the endpoint is being disabled; enabling it resumes this delivery
		return o
	}
	ra, ok := RetryAfter(resp.StatusCode, resp.Header, now)
	delay, final := d.cfg.Retry.AfterFailure(att.Number-job.Delivery.Base, ra, ok)
	if final {
		o.Status = StatusFailed
	} else {
		o.Status, o.Next = StatusPending, now.Add(delay)
	}
	return o
}

// record writes the outcome and reports whether the queue accepted it. It
// runs even when ctx has just ended, bounded by its own timeout: the queue
// accepts it only while the lease is ours (saved false, no error, when it
// was lost). A success also marks its endpoint healthy, in the same write
// (Outcome.MarkEndpoint): a disable decision, which reads the marks, never
// misses a recorded success. An outcome that cannot be written is an
// error: the lease expires and the attempt repeats.
func (d *Dispatcher) record(ctx context.Context, job Job, o *Outcome, take bool) (saved bool, err error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	log := d.deps.Logger
	dl := &job.Delivery
	ctx = d.logContext(ctx, dl, o.Attempt) // log lines carry the event's trace
	o.MarkEndpoint = o.Attempt != nil && o.Attempt.Succeeded() && !dl.Test && d.deps.Stats != nil
	if take && dl.OrderingKey != "" && o.Status.Ended() {
		o.HandoffUntil = d.LeaseUntil(d.deps.Clock.Now())
	}
	ok, next, err := d.deps.Queue.Complete(rctx, job, *o)
	o.Handoff = next
	switch {
	case err != nil:
		log.ErrorContext(ctx, "recording a delivery outcome failed; the lease expires and the attempt repeats",
			"delivery_id", dl.ID, "error", err.Error())
		return false, err
	case !ok:
		log.WarnContext(ctx, "lease lost before the outcome was recorded", "delivery_id", dl.ID)
		return false, nil
	}
	if a := o.Attempt; a != nil && !a.Succeeded() {
		log.InfoContext(ctx, "delivery attempt failed", "delivery_id", dl.ID, "event_id", dl.EventID,
			"endpoint_id", dl.EndpointID, "attempt", a.Number, "error_type", string(a.ErrorType),
			"error", a.Error, "next_status", string(o.Status))
	}
	return true, nil
}

// String names an endpoint status in messages.
func (s EndpointStatus) String() string {
	switch s {
	case EndpointActive:
		return "active"
	case EndpointInactive:
		return "inactive"
	case EndpointDisabled:
		return "disabled"
	}
	return "in an unknown state"
}
