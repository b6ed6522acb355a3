package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/secretbox"
	"github.com/voxscriber/webhooks/pkg/signing"
)

// Rotation bounds.
const (
	DefaultOverlap = 24 * time.Hour
	MaxOverlap     = 7 * 24 * time.Hour
	// MaxSecrets bounds how many secrets (current + previous ones still in
	// their overlap) an endpoint keeps; rotating faster drops the oldest.
	MaxSecrets = 5
)

// DevSecretsKey is the 32-byte key used when DEV_MODE=true and SECRETS_KEY
// is unset. It is published in the source: secrets sealed with it are not
// protected at rest.
const DevSecretsKey = "voxscriber-DEV-ONLY-not-a-secret"

// ErrSecretsKeyMismatch means the configured SECRETS_KEY cannot open what is
// stored: starting would make every stored endpoint secret unreadable.
var ErrSecretsKeyMismatch = errors.New("SECRETS_KEY does not match the key that encrypted the stored endpoint secrets")

const (
	keyCheckPlain = "voxscriber-webhooks SECRETS_KEY check v1"
	keyCheckAAD   = "wh:secrets:keycheck"
)

// OpenSecretsKey returns the box for SECRETS_KEY. An empty key is an error
// unless dev is set; then the development key is used and devKey is true
// (the caller must warn loudly).
func OpenSecretsKey(key string, dev bool) (box *secretbox.Box, devKey bool, err error) {
	if strings.TrimSpace(key) != "" {
		box, err = secretbox.FromBase64(key)
		return box, false, err
	}
	if !dev {
		return nil, false, errors.New("SECRETS_KEY is required: set it to the base64 encoding of 32 random bytes (openssl rand -base64 32), or set DEV_MODE=true to use the built-in development key")
	}
	box, err = secretbox.New([]byte(DevSecretsKey))
	return box, true, err
}

// VerifySecretsKey proves box holds the key that sealed the stored secrets:
// on first start it stores a sealed constant, later starts must open it.
func VerifySecretsKey(ctx context.Context, store Store, box *secretbox.Box) error {
	stored, err := store.EnsureKeyCheck(ctx, box.Seal(keyCheckPlain, keyCheckAAD))
	if err != nil {
		return fmt.Errorf("check SECRETS_KEY against the store: %w", err)
	}
	if plain, err := box.Open(stored, keyCheckAAD); err != nil || plain != keyCheckPlain {
		return ErrSecretsKeyMismatch
	}
	return nil
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
	ent := s.entry(ctx, accountID, auditlog.EndpointRotate, id, "")
	e, err := s.store.UpdateEndpoint(ctx, accountID, id, func(e *Endpoint) (bool, error) {
		now := s.clock()
		ent.Summary = fmt.Sprintf("signing secret rotated; the previous one stays valid until %s", now.Add(overlap).Format(time.RFC3339))
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
	}, &ent)
	if err != nil {
		return Endpoint{}, "", err
	}
	return e, secret, nil
}

// validSecrets decrypts an endpoint's secrets still valid at now, newest
// first (the order they are kept in).
func (s *Service) validSecrets(e Endpoint, now time.Time) ([]Secret, error) {
	var out []Secret
	for _, sec := range e.Secrets {
		if !sec.ExpireTime.IsZero() && !now.Before(sec.ExpireTime) {
			continue
		}
		plain, err := s.box.Open(sec.Sealed, e.ID)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: open signing secret: %w", e.ID, err)
		}
		out = append(out, Secret{Value: plain, ExpireTime: sec.ExpireTime})
	}
	return out, nil
}
