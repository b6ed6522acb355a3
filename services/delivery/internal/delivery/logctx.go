package delivery

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// logContext is ctx carrying the span a delivery's log lines belong to, so
// they get its trace_id and span_id: the attempt's span when one was made,
// else the trace context stored with the delivery (the event's trace).
func (d *Dispatcher) logContext(ctx context.Context, dl *Delivery, a *Attempt) context.Context {
	if a != nil && a.TraceID != "" && a.SpanID != "" {
		tid, err1 := trace.TraceIDFromHex(a.TraceID)
		sid, err2 := trace.SpanIDFromHex(a.SpanID)
		if err1 == nil && err2 == nil {
			return trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true,
			}))
		}
	}
	return d.parentContext(ctx, dl)
}
