package delivery

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/voxscriber/webhooks/pkg/telemetry"
)

// Metered wraps a Queue so that every recorded outcome is counted:
//
//	webhook.deliveries        {outcome, http.response.status_class, error.type}
//	webhook.attempt.duration  s, {outcome, http.response.status_class}
//
// outcome is succeeded, retry (failed attempt, another one scheduled),
// failed (no attempts left), parked or canceled. A deferral (a dependency
// did not answer; no attempt made) is not an outcome and is not counted.
// Counting at Complete means only outcomes actually written (lease still
// held) are counted, once each.
func Metered(q Queue, m metric.Meter) Queue {
	mq := &meteredQueue{Queue: q}
	mq.deliveries, _ = m.Int64Counter("webhook.deliveries", metric.WithUnit("{delivery}"),
		metric.WithDescription("Delivery outcomes recorded, by outcome and response status class"))
	mq.duration, _ = m.Float64Histogram("webhook.attempt.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of webhook HTTP attempts, until the response or the error"))
	return mq
}

type meteredQueue struct {
	Queue
	deliveries metric.Int64Counter
	duration   metric.Float64Histogram
	sets       sync.Map // string → measurementSets
}

func (q *meteredQueue) Complete(ctx context.Context, job Job, o Outcome) (bool, *Job, error) {
	ok, next, err := q.Queue.Complete(ctx, job, o)
	if ok && err == nil {
		q.observe(ctx, o)
	}
	return ok, next, err
}

func (q *meteredQueue) observe(ctx context.Context, o Outcome) {
	var outcome string
	switch o.Status {
	case StatusSucceeded:
		outcome = "succeeded"
	case StatusFailed:
		outcome = "failed"
	case StatusParked:
		outcome = "parked"
	case StatusCanceled:
		outcome = "canceled"
	case StatusPending:
		if o.Attempt == nil {
			return // deferred
		}
		outcome = "retry"
	default:
		outcome = string(o.Status)
	}
	var class string
	var etype ErrorType
	if a := o.Attempt; a != nil {
		class, etype = telemetry.StatusClass(a.StatusCode), a.ErrorType
	}
	sets := q.attributeSets(outcome, class, etype)
	q.deliveries.Add(ctx, 1, sets.deliveries)
	if a := o.Attempt; a != nil {
		q.duration.Record(ctx, max(a.Latency, 0).Seconds(), sets.duration)
	}
}

// measurementSets are the attribute options of one combination of outcome,
// status class and error type, built once: building them (a sorted,
// deduplicated set) per delivery was a few percent of a delivery's CPU.
type measurementSets struct {
	deliveries, duration metric.MeasurementOption
}

func (q *meteredQueue) attributeSets(outcome, class string, etype ErrorType) measurementSets {
	key := outcome + "|" + class + "|" + string(etype)
	if v, ok := q.sets.Load(key); ok {
		return v.(measurementSets)
	}
	attrs := []attribute.KeyValue{attribute.String("outcome", outcome)}
	if class != "" {
		attrs = append(attrs, attribute.String("http.response.status_class", class))
	}
	if etype != ErrorNone {
		attrs = append(attrs, attribute.String("error.type", string(etype)))
	}
	sets := measurementSets{
		deliveries: metric.WithAttributeSet(attribute.NewSet(attrs...)),
		duration:   metric.WithAttributeSet(attribute.NewSet(attrs[:min(len(attrs), 2)]...)),
	}
	q.sets.Store(key, sets) // a few dozen combinations at most
	return sets
}

// ScheduleStats is a snapshot of the retry schedule for the gauges.
type ScheduleStats struct {
	// Depth counts scheduled deliveries (due, waiting or leased).
	Depth int64
	// OldestDue is the due time of the oldest due, unclaimed delivery;
	// zero when none is due.
	OldestDue time.Time
	// Parked counts deliveries parked while their endpoint is off.
	Parked int64
	// PendingDisables counts decisions to disable an endpoint that the
	// registry has not confirmed yet or whose notice is not sent yet.
	PendingDisables int64
	// Waiting counts ordered deliveries waiting for an earlier one of their
	// ordering key.
	Waiting int64
}

// ObserveSchedule registers the schedule gauges, read from stats at each
// collection (a scrape), never on the delivery path:
//
//	webhook.schedule.depth   {delivery}
//	webhook.schedule.lag     s, age of the oldest due delivery (0: none due)
//	webhook.deliveries.parked {delivery}
//	webhook.endpoints.disables_pending {endpoint}
//	webhook.deliveries.waiting {delivery}, ordered ones behind an earlier one
func ObserveSchedule(m metric.Meter, now func() time.Time, stats func(context.Context, time.Time) (ScheduleStats, error)) error {
	depth, err := m.Int64ObservableGauge("webhook.schedule.depth", metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries in the retry schedule (all shards)"))
	if err != nil {
		return err
	}
	lag, err := m.Float64ObservableGauge("webhook.schedule.lag", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest due delivery not yet claimed"))
	if err != nil {
		return err
	}
	parked, err := m.Int64ObservableGauge("webhook.deliveries.parked", metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries parked while their endpoint is inactive or disabled"))
	if err != nil {
		return err
	}
	disables, err := m.Int64ObservableGauge("webhook.endpoints.disables_pending", metric.WithUnit("{endpoint}"),
		metric.WithDescription("Decisions to disable an endpoint not yet carried out (registry or notice pending)"))
	if err != nil {
		return err
	}
	waiting, err := m.Int64ObservableGauge("webhook.deliveries.waiting", metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries to endpoints ordered by key waiting for an earlier delivery of their key"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		t := now()
		s, err := stats(ctx, t)
		if err != nil {
			return err
		}
		o.ObserveInt64(depth, s.Depth)
		o.ObserveInt64(parked, s.Parked)
		o.ObserveInt64(disables, s.PendingDisables)
		o.ObserveInt64(waiting, s.Waiting)
		l := 0.0
		if !s.OldestDue.IsZero() && s.OldestDue.Before(t) {
			l = t.Sub(s.OldestDue).Seconds()
		}
		o.ObserveFloat64(lag, l)
		return nil
	}, depth, lag, parked, disables, waiting)
	return err
}
