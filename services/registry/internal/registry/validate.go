package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/mail"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/pkg/ssrf"
)

// Limits on what customers may store.
const (
	MaxAccountNameLen = 100
	MaxDescriptionLen = 256
	MaxHeaders        = 20
	MaxHeaderNameLen  = 256
	MaxHeaderValueLen = 4096
	MaxEmailLen       = 254
	MaxReasonLen      = 1024
	// MaxRateLimit bounds an endpoint's rate_limit_per_second.
	MaxRateLimit = 10_000
)

// Wildcard subscribes to every event type.
const Wildcard = events.Wildcard

// validateURL applies the SSRF policy. ssrf errors start with "url: "; the
// field is carried by the InvalidError instead.
func validateURL(ctx context.Context, p ssrf.Policy, raw string) error {
	if _, err := p.ValidateURL(ctx, raw); err != nil {
		var se *ssrf.Error
		if errors.As(err, &se) {
			return apierr.Invalid("url", "%s", strings.TrimPrefix(se.Message, "url: "))
		}
		return err
	}
	return nil
}

// categories are the first segments of the catalogue's type names
// ("transcription", "upload", "credits"): the valid "<category>.*" entries.
func categories() map[string]bool {
	m := make(map[string]bool)
	for _, t := range events.Catalogue() {
		if i := strings.IndexByte(t.Name, '.'); i > 0 {
			m[t.Name[:i]] = true
		}
	}
	return m
}

// validateEventTypes checks a subscription list: at least one entry, each a
// known type, a known "<category>.*" or "*", no duplicates.
func validateEventTypes(types []string) error {
	if len(types) == 0 {
		return apierr.Invalid("event_types", "at least one event type is required (see GET /v1/event-types)")
	}
	cats := categories()
	seen := make(map[string]int, len(types))
	for i, t := range types {
		field := fmt.Sprintf("event_types[%d]", i)
		if j, dup := seen[t]; dup {
			return apierr.Invalid(field, "%q is listed twice (also event_types[%d])", t, j)
		}
		seen[t] = i
		switch {
		case t == "":
			return apierr.Invalid(field, "is empty")
		case t == Wildcard:
		case strings.HasSuffix(t, ".*"):
			if !cats[strings.TrimSuffix(t, ".*")] {
				return apierr.Invalid(field, "%q matches no event type; known categories: %s", t, strings.Join(sortedKeys(cats), ", "))
			}
		default:
			if _, ok := events.Lookup(t); !ok {
				return apierr.Invalid(field, "unknown event type %q (see GET /v1/event-types)", t)
			}
		}
	}
	return nil
}

func validateDescription(d string) error {
	if n := utf8.RuneCountInString(d); n > MaxDescriptionLen {
		return apierr.Invalid("description", "is %d characters long; at most %d are allowed", n, MaxDescriptionLen)
	}
	return nil
}

// reservedHeaders are set by the sender (or by HTTP itself) and cannot be
// overridden by custom headers. Names starting with "x-webhook-" or
// "webhook-" are reserved too.
var reservedHeaders = map[string]bool{
	"content-type": true, "content-length": true, "host": true, "user-agent": true,
	"traceparent": true, "tracestate": true,
	// Hop-by-hop and framing headers would break the request itself.
	"connection": true, "keep-alive": true, "transfer-encoding": true, "te": true,
	"trailer": true, "upgrade": true, "proxy-connection": true, "content-encoding": true,
	"expect": true,
}

// validateHeaders checks custom headers: valid HTTP token names that are
// not reserved (case-insensitively) nor repeated in another case, values
// without control characters, at most MaxHeaders.
func validateHeaders(h map[string]string) error {
	if len(h) > MaxHeaders {
		return apierr.Invalid("headers", "has %d entries; at most %d are allowed", len(h), MaxHeaders)
	}
	lower := make(map[string]string, len(h))
	for _, name := range sortedKeys(h) {
		field := fmt.Sprintf("headers[%q]", name)
		if name == "" {
			return apierr.Invalid("headers", "a header name is empty")
		}
		if len(name) > MaxHeaderNameLen {
			return apierr.Invalid(field, "name is longer than %d bytes", MaxHeaderNameLen)
		}
		if !isToken(name) {
			return apierr.Invalid(field, "%q is not a valid HTTP header name (letters, digits and !#$%%&'*+-.^_`|~ only)", name)
		}
		l := strings.ToLower(name)
		if reservedHeaders[l] || strings.HasPrefix(l, "x-webhook-") || strings.HasPrefix(l, "webhook-") {
			return apierr.Invalid(field, "%s is set by VoxScriber and cannot be overridden", name)
		}
		if other, dup := lower[l]; dup {
			return apierr.Invalid(field, "repeats header %s (names are case-insensitive)", other)
		}
		lower[l] = name
		v := h[name]
		if len(v) > MaxHeaderValueLen {
			return apierr.Invalid(field, "value is longer than %d bytes", MaxHeaderValueLen)
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; c == '\r' || c == '\n' || c == 0 || (c < ' ' && c != '\t') || c == 0x7f {
				return apierr.Invalid(field, "value contains a control character (such as CR or LF)")
			}
		}
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validateSecret checks a customer-supplied secret.
func validateSecret(s string) error {
	if _, err := signing.ParseSecret(s); err != nil {
		msg := strings.TrimPrefix(strings.TrimPrefix(err.Error(), "secret: "), "secret ")
		if !strings.Contains(msg, "bytes") {
			msg += fmt.Sprintf(" (expected %q followed by the base64 encoding of 24 to 64 random bytes)", signing.SecretPrefix)
		}
		return apierr.Invalid("secret", "%s", msg)
	}
	return nil
}

// validateInputStatus accepts what a customer may set: ACTIVE or INACTIVE.
func validateInputStatus(s Status) error {
	switch s {
	case StatusActive, StatusInactive:
		return nil
	case StatusDisabled:
		return apierr.Invalid("status", "DISABLED is set by the system only; use ACTIVE or INACTIVE")
	}
	return apierr.Invalid("status", "must be ACTIVE or INACTIVE")
}

// validateOrdering accepts the orderings a customer may set.
func validateOrdering(o Ordering) error {
	switch o {
	case OrderingUnordered, OrderingOrderedByKey:
		return nil
	}
	return apierr.Invalid("ordering", "must be ENDPOINT_ORDERING_UNORDERED or ENDPOINT_ORDERING_ORDERED_BY_KEY, got %s", o)
}

func validateAccountName(name string) error {
	if strings.TrimSpace(name) == "" {
		return apierr.Invalid("name", "is required")
	}
	if n := utf8.RuneCountInString(name); n > MaxAccountNameLen {
		return apierr.Invalid("name", "is %d characters long; at most %d are allowed", n, MaxAccountNameLen)
	}
	return nil
}

// validateEmail accepts "" (no notifications) or a plain address.
func validateEmail(field, email string) error {
	if email == "" {
		return nil
	}
	if len(email) > MaxEmailLen {
		return apierr.Invalid(field, "is longer than %d characters", MaxEmailLen)
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return apierr.Invalid(field, "must be a plain email address such as ops@example.com")
	}
	return nil
}

func validateSettings(s Settings) error {
	if err := validateEmail("notification_email", s.NotificationEmail); err != nil {
		return err
	}
	if t := s.CreditsLowThreshold; math.IsNaN(t) || math.IsInf(t, 0) || t < 0 {
		return apierr.Invalid("credits_low_threshold", "must be a number >= 0")
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
