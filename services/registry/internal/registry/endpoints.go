package registry

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/signing"
)

// Paging bounds of ListEndpoints.
const (
	DefaultPageSize = 50
	MaxPageSize     = 100
)

// CreateEndpoint validates and stores an endpoint. The signing secret (the
// one supplied or a generated one) is returned only here.
func (s *Service) CreateEndpoint(ctx context.Context, accountID string, in EndpointInput) (Endpoint, string, error) {
	if in.Status == "" {
		in.Status = StatusActive
	}
	if in.Ordering == "" {
		in.Ordering = OrderingUnordered
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
		Ordering:    in.Ordering,
		CreateTime:  now,
		UpdateTime:  now,
	}
	e.Secrets = []SealedSecret{{Sealed: s.box.Seal(secret, e.ID)}}
	how := "generated"
	if in.Secret != "" {
		how = "supplied by the caller"
	}
	ent := s.entry(ctx, accountID, auditlog.EndpointCreate, e.ID, fmt.Sprintf("endpoint created: url %s, eventTypes %v, status %s, ordering %s%s, secret %s",
		e.URL, e.EventTypes, e.Status, e.Ordering, headerNames(e.Headers), how))
	if err := s.store.CreateEndpoint(ctx, e, ent); err != nil {
		return Endpoint{}, "", err
	}
	return e, secret, nil
}

// endpointFields names the customer-settable endpoint fields.
type endpointFields struct{ url, eventTypes, description, headers, status, rateLimit, ordering bool }

var allEndpointFields = endpointFields{true, true, true, true, true, true, true}

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
	if f.ordering {
		if err := validateOrdering(in.Ordering); err != nil {
			return err
		}
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
		return f, apierr.Invalid("update_mask", "is required: name the fields to change (url, event_types, description, headers, status, rate_limit_per_second, ordering)")
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
		case "ordering":
			f.ordering = true
		case "id", "disabled_reason", "disabledReason", "disable_time", "disableTime",
			"create_time", "createTime", "update_time", "updateTime":
		default:
			return f, apierr.Invalid("update_mask", "unknown or read-only field %q; settable: url, event_types, description, headers, status, rate_limit_per_second, ordering", p)
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
	if in.Ordering == "" {
		in.Ordering = OrderingUnordered // an unset ordering is the default, as on create
	}
	if err := s.validateInput(ctx, in, f); err != nil {
		return Endpoint{}, err
	}
	ent := s.entry(ctx, accountID, auditlog.EndpointUpdate, id, "")
	return s.store.UpdateEndpoint(ctx, accountID, id, func(e *Endpoint) (bool, error) {
		if f == (endpointFields{}) {
			return false, nil
		}
		now := s.clock()
		var changes []string
		if f.url {
			changes = append(changes, fmt.Sprintf("url %s → %s", e.URL, in.URL))
			e.URL = in.URL
		}
		if f.eventTypes {
			changes = append(changes, fmt.Sprintf("eventTypes %v → %v", e.EventTypes, in.EventTypes))
			e.EventTypes = slices.Clone(in.EventTypes)
		}
		if f.description {
			changes = append(changes, fmt.Sprintf("description %q → %q", e.Description, in.Description))
			e.Description = in.Description
		}
		if f.headers {
			// Header values may be credentials: names only.
			changes = append(changes, "headers set"+headerNames(in.Headers))
			e.Headers = maps.Clone(in.Headers)
		}
		if f.rateLimit {
			changes = append(changes, fmt.Sprintf("rateLimitPerSecond %d → %d", e.RateLimit, in.RateLimit))
			e.RateLimit = in.RateLimit
		}
		if f.ordering {
			changes = append(changes, fmt.Sprintf("ordering %s → %s", e.Ordering, in.Ordering))
			e.Ordering = in.Ordering
		}
		if f.status {
			changes = append(changes, fmt.Sprintf("status %s → %s", e.Status, in.Status))
			setStatus(e, in.Status, "", now)
		}
		ent.Summary = strings.Join(changes, "; ")
		e.UpdateTime = now
		return true, nil
	}, &ent)
}

// headerNames names custom headers (never their values, which may be
// credentials) for an audit summary: "" when there are none.
func headerNames(h map[string]string) string {
	if len(h) == 0 {
		return ""
	}
	return fmt.Sprintf(", headers %v", slices.Sorted(maps.Keys(h)))
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
	return s.store.DeleteEndpoint(ctx, accountID, id, s.entry(ctx, accountID, auditlog.EndpointDelete, id, "endpoint deleted"))
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
	action := auditlog.EndpointDisable
	if st == StatusActive {
		action = auditlog.EndpointEnable
	}
	ent := s.entry(ctx, accountID, action, id, "")
	return s.store.UpdateEndpoint(ctx, accountID, id, func(e *Endpoint) (bool, error) {
		if e.Status == st {
			return false, nil
		}
		now := s.clock()
		ent.Summary = fmt.Sprintf("status %s → %s", e.Status, st)
		if reason != "" {
			ent.Summary += ": " + reason
		}
		setStatus(e, st, reason, now)
		e.UpdateTime = now
		return true, nil
	}, &ent)
}
