package registry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/secretbox"
	"github.com/voxscriber/webhooks/pkg/ssrf"
)

// Config wires a Service.
type Config struct {
	Store Store
	// Box seals signing secrets (SECRETS_KEY).
	Box *secretbox.Box
	// URLPolicy is the SSRF guard applied to endpoint URLs.
	URLPolicy ssrf.Policy
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Service implements the registry's use cases.
type Service struct {
	store  Store
	box    *secretbox.Box
	policy ssrf.Policy
	now    func() time.Time
	// disabled counts system disables (webhook.endpoints.disabled).
	disabled metric.Int64Counter
}

// NewService returns a Service.
func NewService(c Config) (*Service, error) {
	if c.Store == nil || c.Box == nil {
		return nil, errors.New("registry: Store and Box are required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Service{store: c.Store, box: c.Box, policy: c.URLPolicy, now: c.Now, disabled: newDisabledCounter()}, nil
}

var _ authn.Resolver = (*Service)(nil)

func (s *Service) clock() time.Time { return s.now().UTC() }

// entry is the audit entry of a change made now by the caller of ctx (its
// API key; the system for internal calls).
func (s *Service) entry(ctx context.Context, acct, action, resource, summary string) auditlog.Entry {
	return auditlog.New(acct, auditlog.ActorFrom(ctx), action, resource, summary, s.clock())
}

// checkEndpointID refuses an empty id; a malformed one cannot exist.
func checkEndpointID(field, id string) error {
	if id == "" {
		return apierr.Invalid(field, "is required")
	}
	if !ids.Valid(ids.Endpoint, id) {
		return apierr.NotFound("endpoint", id)
	}
	return nil
}
