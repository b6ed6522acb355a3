package registry

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// newDisabledCounter makes webhook.endpoints.disabled: endpoints the system
// disabled (after repeated failures), counted at the transition. It comes
// from the global meter provider: a no-op unless the process serves metrics.
func newDisabledCounter() metric.Int64Counter {
	c, _ := otel.GetMeterProvider().Meter("github.com/voxscriber/webhooks/services/registry").Int64Counter(
		"webhook.endpoints.disabled", metric.WithUnit("{endpoint}"),
		metric.WithDescription("Endpoints disabled by the system"))
	return c
}

func (s *Service) countDisabled(ctx context.Context) {
	if s.disabled != nil {
		s.disabled.Add(ctx, 1)
	}
}
