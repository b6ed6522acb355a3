package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/metric"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/secretbox"
	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/pkg/ssrf"
)

// Paging and rotation bounds.
const (
	DefaultPageSize = 50
	MaxPageSize     = 100
	DefaultOverlap  = 24 * time.Hour
	MaxOverlap      = 7 * 24 * time.Hour
	// MaxSecrets bounds how many secrets (current + previous ones still in
	// their overlap) an endpoint keeps; rotating faster drops the oldest.
	MaxSecrets = 5
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

// ---- accounts, API keys, settings ----

// CreateAccount creates an account and its first API key. The key is
// returned only here; the store keeps its hash.
func (s *Service) CreateAccount(ctx context.Context, name, email string) (Account, string, error) {
	name = strings.TrimSpace(name)
	if err := validateAccountName(name); err != nil {
		return Account{}, "", err
	}
	email = strings.TrimSpace(email)
	if err := validateEmail("notification_email", email); err != nil {
		return Account{}, "", err
	}
	now := s.clock()
	a := Account{
		ID:         ids.New(ids.Account, now),
		Name:       name,
		CreateTime: now,
		Settings:   Settings{NotificationEmail: email},
	}
	key := newAPIKey()
	if err := s.store.CreateAccount(ctx, a, authn.HashKey(key)); err != nil {
		return Account{}, "", err
	}
	return a, key, nil
}

// newAPIKey returns "vsk_" + base64url of 32 random bytes.
func newAPIKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand contract)
	return ids.APIKey + base64.RawURLEncoding.EncodeToString(b)
}

// AccountForKey resolves an API key to its account, "" when unknown. It
// implements authn.Resolver.
func (s *Service) AccountForKey(ctx context.Context, apiKey string) (string, error) {
	if !strings.HasPrefix(apiKey, ids.APIKey) {
		return "", nil
	}
	return s.store.AccountForKeyHash(ctx, authn.HashKey(apiKey))
}

// Authenticate is AccountForKey for other services: unknown keys are
// NotFound.
func (s *Service) Authenticate(ctx context.Context, apiKey string) (string, error) {
	acct, err := s.AccountForKey(ctx, apiKey)
	if err != nil {
		return "", err
	}
	if acct == "" {
		return "", apierr.Wrap(apierr.ErrNotFound, "unknown or revoked API key")
	}
	return acct, nil
}

// GetSettings returns an account's settings.
func (s *Service) GetSettings(ctx context.Context, accountID string) (Settings, error) {
	a, err := s.store.GetAccount(ctx, accountID)
	if err != nil {
		return Settings{}, err
	}
	return a.Settings, nil
}

// UpdateSettings changes the settings named by paths (notification_email,
// credits_low_threshold) and returns the result.
func (s *Service) UpdateSettings(ctx context.Context, accountID string, in Settings, paths []string) (Settings, error) {
	var mask SettingsMask
	if len(paths) == 0 {
		return Settings{}, apierr.Invalid("update_mask", "is required: name the fields to change (notification_email, credits_low_threshold)")
	}
	for _, p := range paths {
		switch p {
		case "notification_email", "notificationEmail":
			mask.NotificationEmail = true
		case "credits_low_threshold", "creditsLowThreshold":
			mask.CreditsLowThreshold = true
		default:
			return Settings{}, apierr.Invalid("update_mask", "unknown field %q; settable: notification_email, credits_low_threshold", p)
		}
	}
	in.NotificationEmail = strings.TrimSpace(in.NotificationEmail)
	if err := validateSettings(in); err != nil {
		return Settings{}, err
	}
	a, err := s.store.GetAccount(ctx, accountID)
	if err != nil {
		return Settings{}, err
	}
	out := a.Settings
	if mask.NotificationEmail {
		out.NotificationEmail = in.NotificationEmail
	}
	if mask.CreditsLowThreshold {
		out.CreditsLowThreshold = in.CreditsLowThreshold
	}
	if err := s.store.UpdateSettings(ctx, accountID, out, mask); err != nil {
		return Settings{}, err
	}
	return out, nil
}

// ---- endpoints ----

// CreateEndpoint validates and stores an endpoint. The signing secret (the
// one supplied or a generated one) is returned only here.
func (s *Service) CreateEndpoint(ctx context.Context, accountID string, in EndpointInput) (Endpoint, string, error) {
	if in.Status == "" {
		in.Status = StatusActive
	}
	if err := s.validateInput(ctx, in, allEndpointFields); err != nil {
		return Endpoint{}, "", err
	}
	secret := in.Secret
	if secret == "" {
		secret = signing.GenerateSecret()
	} else if err := validateSecret(secret); err != nil {
		return Endpoint{}, "", err
	}
	now := s.clock()
	e := Endpoint{
		ID:          ids.New(ids.Endpoint, now),
		AccountID:   accountID,
		URL:         in.URL,
		EventTypes:  slices.Clone(in.EventTypes),
		Description: in.Description,
		Status:      in.Status,
		Headers:     maps.Clone(in.Headers),
		RateLimit:   in.RateLimit,
		CreateTime:  now,
		UpdateTime:  now,
	}
	e.Secrets = []SealedSecret{{Sealed: s.box.Seal(secret, e.ID)}}
	if err := s.store.CreateEndpoint(ctx, e); err != nil {
		return Endpoint{}, "", err
	}
	return e, secret, nil
}

// endpointFields names the customer-settable endpoint fields.
type endpointFields struct{ url, eventTypes, description, headers, status, rateLimit bool }

var allEndpointFields = endpointFields{true, true, true, true, true, true}

func (s *Service) validateInput(ctx context.Context, in EndpointInput, f endpointFields) error {
	if f.url {
		if err := validateURL(ctx, s.policy, in.URL); err != nil {
			return err
		}
	}
	if f.eventTypes {
		if err := validateEventTypes(in.EventTypes); err != nil {
			return err
		}
	}
	if f.description {
		if err := validateDescription(in.Description); err != nil {
			return err
		}
	}
	if f.headers {
		if err := validateHeaders(in.Headers); err != nil {
			return err
		}
	}
	if f.status {
		if err := validateInputStatus(in.Status); err != nil {
			return err
		}
	}
	if f.rateLimit && (in.RateLimit < 0 || in.RateLimit > MaxRateLimit) {
		return apierr.Invalid("rate_limit_per_second", "must be between 0 (no limit) and %d, got %d", MaxRateLimit, in.RateLimit)
	}
	return nil
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

// checkAccountID is for internal calls that name the account.
func checkAccountID(id string) error {
	if id == "" {
		return apierr.Invalid("account_id", "is required")
	}
	if !ids.Valid(ids.Account, id) {
		return apierr.NotFound("account", id)
	}
	return nil
}

// GetEndpoint returns one endpoint of the account.
func (s *Service) GetEndpoint(ctx context.Context, accountID, id string) (Endpoint, error) {
	if err := checkEndpointID("id", id); err != nil {
		return Endpoint{}, err
	}
	return s.store.GetEndpoint(ctx, accountID, id)
}

// ListEndpoints pages through the account's endpoints, oldest first.
func (s *Service) ListEndpoints(ctx context.Context, accountID string, pageSize int, pageToken string) ([]Endpoint, string, error) {
	switch {
	case pageSize < 0:
		return nil, "", apierr.Invalid("page_size", "must not be negative")
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	var after Cursor
	if pageToken != "" {
		c, ok := decodeCursor(pageToken)
		if !ok {
			return nil, "", apierr.Invalid("page_token", "is not a token returned by ListEndpoints")
		}
		after = c
	}
	eps, more, err := s.store.ListEndpoints(ctx, accountID, after, pageSize)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more && len(eps) > 0 {
		last := eps[len(eps)-1]
		next = encodeCursor(Cursor{CreateMillis: last.CreateTime.UnixMilli(), ID: last.ID})
	}
	return eps, next, nil
}

func encodeCursor(c Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreateMillis, 10) + ":" + c.ID))
}

func decodeCursor(tok string) (Cursor, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return Cursor{}, false
	}
	ms, id, ok := strings.Cut(string(raw), ":")
	if !ok || !ids.Valid(ids.Endpoint, id) {
		return Cursor{}, false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 {
		return Cursor{}, false
	}
	return Cursor{CreateMillis: n, ID: id}, true
}

// parseEndpointMask reads an update mask. Output-only fields are ignored
// (a client may send back the whole resource it read).
func parseEndpointMask(paths []string) (endpointFields, error) {
	var f endpointFields
	if len(paths) == 0 {
		return f, apierr.Invalid("update_mask", "is required: name the fields to change (url, event_types, description, headers, status, rate_limit_per_second)")
	}
	for _, p := range paths {
		switch p {
		case "url":
			f.url = true
		case "event_types", "eventTypes":
			f.eventTypes = true
		case "description":
			f.description = true
		case "headers":
			f.headers = true
		case "status":
			f.status = true
		case "rate_limit_per_second", "rateLimitPerSecond":
			f.rateLimit = true
		case "id", "disabled_reason", "disabledReason", "disable_time", "disableTime",
			"create_time", "createTime", "update_time", "updateTime":
		default:
			return f, apierr.Invalid("update_mask", "unknown or read-only field %q; settable: url, event_types, description, headers, status, rate_limit_per_second", p)
		}
	}
	return f, nil
}

// UpdateEndpoint changes the fields named by paths.
func (s *Service) UpdateEndpoint(ctx context.Context, accountID, id string, in EndpointInput, paths []string) (Endpoint, error) {
	if err := checkEndpointID("id", id); err != nil {
		return Endpoint{}, err
	}
	f, err := parseEndpointMask(paths)
	if err != nil {
		return Endpoint{}, err
	}
	if err := s.validateInput(ctx, in, f); err != nil {
		return Endpoint{}, err
	}
	return s.store.UpdateEndpoint(ctx, accountID, id, func(e *Endpoint) (bool, error) {
		if f == (endpointFields{}) {
			return false, nil
		}
		now := s.clock()
		if f.url {
			e.URL = in.URL
		}
		if f.eventTypes {
			e.EventTypes = slices.Clone(in.EventTypes)
		}
		if f.description {
			e.Description = in.Description
		}
		if f.headers {
			e.Headers = maps.Clone(in.Headers)
		}
		if f.rateLimit {
			e.RateLimit = in.RateLimit
		}
		if f.status {
			setStatus(e, in.Status, "", now)
		}
		e.UpdateTime = now
		return true, nil
	})
}

// setStatus moves an endpoint to st; the disable reason and time belong to
// DISABLED only.
func setStatus(e *Endpoint, st Status, reason string, now time.Time) {
	e.Status = st
	if st == StatusDisabled {
		e.DisabledReason, e.DisableTime = reason, now
	} else {
		e.DisabledReason, e.DisableTime = "", time.Time{}
	}
}

// DeleteEndpoint removes an endpoint.
func (s *Service) DeleteEndpoint(ctx context.Context, accountID, id string) error {
	if err := checkEndpointID("id", id); err != nil {
		return err
	}
	return s.store.DeleteEndpoint(ctx, accountID, id)
}

// EnableEndpoint makes an INACTIVE or DISABLED endpoint ACTIVE.
func (s *Service) EnableEndpoint(ctx context.Context, accountID, id string) (Endpoint, error) {
	return s.changeStatus(ctx, accountID, id, StatusActive, "")
}

// DisableEndpoint pauses an endpoint (INACTIVE).
func (s *Service) DisableEndpoint(ctx context.Context, accountID, id string) (Endpoint, error) {
	return s.changeStatus(ctx, accountID, id, StatusInactive, "")
}

func (s *Service) changeStatus(ctx context.Context, accountID, id string, st Status, reason string) (Endpoint, error) {
	if err := checkEndpointID("id", id); err != nil {
		return Endpoint{}, err
	}
	return s.store.UpdateEndpoint(ctx, accountID, id, func(e *Endpoint) (bool, error) {
		if e.Status == st {
			return false, nil
		}
		now := s.clock()
		setStatus(e, st, reason, now)
		e.UpdateTime = now
		return true, nil
	})
}

// RotateSecret makes a new secret current; the previous current one stays
// valid for overlapSeconds (0: DefaultOverlap). Expired secrets are
// dropped. The new secret is returned only here.
func (s *Service) RotateSecret(ctx context.Context, accountID, id string, overlapSeconds int64) (Endpoint, string, error) {
	if err := checkEndpointID("id", id); err != nil {
		return Endpoint{}, "", err
	}
	overlap := DefaultOverlap
	switch {
	case overlapSeconds < 0:
		return Endpoint{}, "", apierr.Invalid("overlap_seconds", "must not be negative")
	case overlapSeconds > int64(MaxOverlap/time.Second):
		return Endpoint{}, "", apierr.Invalid("overlap_seconds", "is more than %d (7 days)", int64(MaxOverlap/time.Second))
	case overlapSeconds > 0:
		overlap = time.Duration(overlapSeconds) * time.Second
	}
	secret := signing.GenerateSecret()
	sealed := s.box.Seal(secret, id)
	e, err := s.store.UpdateEndpoint(ctx, accountID, id, func(e *Endpoint) (bool, error) {
		now := s.clock()
		kept := []SealedSecret{{Sealed: sealed}}
		for _, old := range e.Secrets {
			switch {
			case old.ExpireTime.IsZero():
				old.ExpireTime = now.Add(overlap)
			case !now.Before(old.ExpireTime):
				continue
			}
			kept = append(kept, old)
		}
		if len(kept) > MaxSecrets {
			kept = kept[:MaxSecrets]
		}
		e.Secrets = kept
		e.UpdateTime = now
		return true, nil
	})
	if err != nil {
		return Endpoint{}, "", err
	}
	return e, secret, nil
}

// ---- internal: ingestion and delivery ----

// ListSubscribers returns the ids of the account's ACTIVE endpoints
// subscribed to eventType, oldest first.
func (s *Service) ListSubscribers(ctx context.Context, accountID, eventType string) ([]string, error) {
	if err := checkAccountID(accountID); err != nil {
		return nil, err
	}
	if _, ok := events.Lookup(eventType); !ok {
		return nil, apierr.Invalid("event_type", "unknown event type %q", eventType)
	}
	eps, err := s.store.AllEndpoints(ctx, accountID)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for i := range eps {
		if eps[i].Status == StatusActive && eps[i].Subscribes(eventType) {
			out = append(out, eps[i].ID)
		}
	}
	return out, nil
}

// DeliveryTarget returns an endpoint with its currently valid secrets
// decrypted, newest first.
func (s *Service) DeliveryTarget(ctx context.Context, accountID, id string) (Endpoint, []Secret, error) {
	if err := checkAccountID(accountID); err != nil {
		return Endpoint{}, nil, err
	}
	if err := checkEndpointID("endpoint_id", id); err != nil {
		return Endpoint{}, nil, err
	}
	e, err := s.store.GetEndpoint(ctx, accountID, id)
	if err != nil {
		return Endpoint{}, nil, err
	}
	now := s.clock()
	var out []Secret
	for _, sec := range e.Secrets {
		if !sec.ExpireTime.IsZero() && !now.Before(sec.ExpireTime) {
			continue
		}
		plain, err := s.box.Open(sec.Sealed, e.ID)
		if err != nil {
			return Endpoint{}, nil, fmt.Errorf("endpoint %s: open signing secret: %w", e.ID, err)
		}
		out = append(out, Secret{Value: plain, ExpireTime: sec.ExpireTime})
	}
	return e, out, nil
}

// DisableBySystem marks an endpoint DISABLED with a reason. An endpoint
// already DISABLED keeps its first reason and time.
func (s *Service) DisableBySystem(ctx context.Context, accountID, id, reason string) (Endpoint, error) {
	if err := checkAccountID(accountID); err != nil {
		return Endpoint{}, err
	}
	if err := checkEndpointID("endpoint_id", id); err != nil {
		return Endpoint{}, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		reason = "disabled by the system"
	}
	if utf8.RuneCountInString(reason) > MaxReasonLen {
		reason = string([]rune(reason)[:MaxReasonLen])
	}
	before := s.clock()
	e, err := s.changeStatus(ctx, accountID, id, StatusDisabled, reason)
	if err == nil && !e.DisableTime.Before(before) {
		s.countDisabled(ctx) // disabled by this call, not earlier
	}
	return e, err
}
