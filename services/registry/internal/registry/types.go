// Package registry is the domain of the registry service: accounts, API
// keys, settings, webhook endpoints, their subscriptions and signing secrets.
// It knows nothing of gRPC or of how the Store keeps its data; errors are
// pkg/apierr errors, translated to status codes at the edge.
package registry

import (
	"time"

	"github.com/voxscriber/webhooks/pkg/events"
)

// Status says whether an endpoint receives events.
type Status string

// Endpoint statuses.
const (
	// StatusActive endpoints receive events.
	StatusActive Status = "ACTIVE"
	// StatusInactive endpoints were paused by their owner (or created so).
	StatusInactive Status = "INACTIVE"
	// StatusDisabled endpoints were disabled by the system after repeated
	// failures or a 410 Gone.
	StatusDisabled Status = "DISABLED"
)

// Ordering says whether an endpoint receives the events that share an
// ordering key one at a time, in publish order.
type Ordering string

// Endpoint orderings.
const (
	// OrderingUnordered endpoints get events as they come (the default,
	// and what endpoints stored before orderings existed read as).
	OrderingUnordered Ordering = "UNORDERED"
	// OrderingOrderedByKey endpoints get the events of one ordering key
	// one at a time, in publish order.
	OrderingOrderedByKey Ordering = "ORDERED_BY_KEY"
)

// Account is a customer of VoxScriber.
type Account struct {
	ID         string
	Name       string
	CreateTime time.Time
	Settings   Settings
}

// APIKey is one of an account's API keys. The key itself is never stored:
// Hash is its authn.HashKey, ID is derived from the hash (authn.KeyID) and
// Prefix is its first characters (authn.KeyPrefix), shown in lists and
// logs so its owner recognises it.
type APIKey struct {
	ID         string
	Name       string
	Prefix     string
	Hash       string
	CreateTime time.Time
	// LastUsedTime is when the key was last seen (written at most once a
	// minute; zero when never).
	LastUsedTime time.Time
}

// Settings are per-account preferences.
type Settings struct {
	// NotificationEmail receives disabled-endpoint notices ("" = none).
	NotificationEmail string
	// CreditsLowThreshold: credits.low is emitted when the balance crosses
	// below it.
	CreditsLowThreshold float64
}

// SettingsMask names the settings fields an update changes.
type SettingsMask struct {
	NotificationEmail   bool
	CreditsLowThreshold bool
}

// SealedSecret is a signing secret encrypted with the SECRETS_KEY (the
// endpoint id is the additional authenticated data).
type SealedSecret struct {
	Sealed string
	// ExpireTime is zero for the current secret; a previous secret stays
	// valid until it.
	ExpireTime time.Time
}

// Secret is a decrypted signing secret.
type Secret struct {
	Value      string
	ExpireTime time.Time // zero for the current secret
}

// Endpoint is a customer URL that receives signed webhook requests.
type Endpoint struct {
	ID          string
	AccountID   string
	URL         string
	EventTypes  []string
	Description string
	Status      Status
	Headers     map[string]string
	// RateLimit is the most requests per second per delivery process (0:
	// none).
	RateLimit      int
	Ordering       Ordering
	DisabledReason string
	DisableTime    time.Time
	CreateTime     time.Time
	UpdateTime     time.Time
	// Secrets, newest first: the current one (zero ExpireTime) and the
	// previous ones still inside their rotation overlap.
	Secrets []SealedSecret
}

// EndpointInput is what a customer sends to create or change an endpoint.
type EndpointInput struct {
	URL         string
	EventTypes  []string
	Description string
	// Secret is an optional whsec_ secret (create only); generated when "".
	Secret  string
	Headers map[string]string
	// RateLimit: see Endpoint.RateLimit.
	RateLimit int
	// Status is StatusActive (the default when "") or StatusInactive.
	Status Status
	// Ordering is OrderingUnordered (the default when "") or
	// OrderingOrderedByKey.
	Ordering Ordering
}

// Cursor is a position in an account's endpoint list, ordered by creation
// time (milliseconds) and then id.
type Cursor struct {
	CreateMillis int64
	ID           string
}

// Subscribes reports whether an endpoint subscribed to eventType: an entry
// is an exact type, a category wildcard such as "transcription.*", or "*".
func (e *Endpoint) Subscribes(eventType string) bool {
	for _, t := range e.EventTypes {
		if events.Subscribed(t, eventType) {
			return true
		}
	}
	return false
}
