package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/ids"
)

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
	key, k := newAPIKey(FirstKeyName, now)
	ent := auditlog.New(a.ID, auditlog.Actor{Type: auditlog.ActorAdmin}, auditlog.AccountCreate, a.ID,
		fmt.Sprintf("account %q created with API key %q (%s)", name, k.Name, k.Prefix), now)
	if err := s.store.CreateAccount(ctx, a, k, ent); err != nil {
		return Account{}, "", err
	}
	return a, key, nil
}

// newAPIKey returns a new key, "vsk_" + base64url of 32 random bytes, and
// what is stored of it.
func newAPIKey(name string, now time.Time) (string, APIKey) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand contract)
	key := ids.APIKey + base64.RawURLEncoding.EncodeToString(b)
	return key, describeKey(key, name, now)
}

// describeKey is what is stored of a key: never the key itself.
func describeKey(key, name string, now time.Time) APIKey {
	h := authn.HashKey(key)
	return APIKey{ID: authn.KeyID(h), Name: name, Prefix: authn.KeyPrefix(key), Hash: h, CreateTime: now}
}

// AccountForKey resolves an API key to its account, "" when unknown or
// revoked, and notes that the key was used. It implements authn.Resolver;
// it reads Redis every time (the services' authn.CachingResolver sits in
// front of the registry's Authenticate, and caching here too would add
// the two staleness bounds up).
func (s *Service) AccountForKey(ctx context.Context, apiKey string) (string, error) {
	if !strings.HasPrefix(apiKey, ids.APIKey) {
		return "", nil
	}
	// The name is for a key from before keys were listed, when it is
	// adopted: an account's first key.
	return s.store.ResolveKey(ctx, describeKey(apiKey, FirstKeyName, time.Time{}))
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
	var changes []string
	if mask.NotificationEmail {
		changes = append(changes, fmt.Sprintf("notificationEmail %q → %q", a.Settings.NotificationEmail, out.NotificationEmail))
	}
	if mask.CreditsLowThreshold {
		changes = append(changes, fmt.Sprintf("creditsLowThreshold %g → %g", a.Settings.CreditsLowThreshold, out.CreditsLowThreshold))
	}
	ent := s.entry(ctx, accountID, auditlog.SettingsUpdate, accountID, strings.Join(changes, "; "))
	if err := s.store.UpdateSettings(ctx, accountID, out, mask, ent); err != nil {
		return Settings{}, err
	}
	return out, nil
}
