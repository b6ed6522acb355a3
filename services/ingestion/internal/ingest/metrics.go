package ingest

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// countPublished adds the events a publish call stored for the first time
// to webhook.events.published {webhook.event.type}; repeats (idempotency
// hits) are not counted again.
func (s *Service) countPublished(ctx context.Context, items []*item) {
	for i, it := range items {
		if it.root != i || it.stored || it.refused != nil {
			continue
		}
		s.published.Add(ctx, 1, metric.WithAttributes(attribute.String("webhook.event.type", it.req.Type)))
	}
}

func newPublishedCounter(m metric.Meter) metric.Int64Counter {
	c, _ := m.Int64Counter("webhook.events.published", metric.WithUnit("{event}"),
		metric.WithDescription("Events accepted and stored, by event type"))
	return c
}
