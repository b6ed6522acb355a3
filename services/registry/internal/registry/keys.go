package registry

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// API key limits.
const (
	// MaxAPIKeys is how many keys an account may hold.
	MaxAPIKeys = 20
	// MaxKeyNameLen bounds a key's name (characters).
	MaxKeyNameLen = 100
	// FirstKeyName names the key CreateAccount makes (and a key from
	// before keys had names, when it is adopted).
	FirstKeyName = "first key"
)

// CreateAPIKey adds a named key to an account. The key is returned only
// here; the store keeps its hash.
func (s *Service) CreateAPIKey(ctx context.Context, accountID, name string) (APIKey, string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return APIKey{}, "", apierr.Invalid("name", "is required: name the key after what uses it")
	}
	if n := utf8.RuneCountInString(name); n > MaxKeyNameLen {
		return APIKey{}, "", apierr.Invalid("name", "is %d characters long; at most %d are allowed", n, MaxKeyNameLen)
	}
	key, k := newAPIKey(name, s.clock())
	ent := s.entry(ctx, accountID, auditlog.APIKeyCreate, k.ID, fmt.Sprintf("API key %q (%s) created", k.Name, k.Prefix))
	if err := s.store.CreateAPIKey(ctx, accountID, k, MaxAPIKeys, ent); err != nil {
		return APIKey{}, "", err
	}
	return k, key, nil
}

// ListAPIKeys pages through an account's keys, oldest first.
func (s *Service) ListAPIKeys(ctx context.Context, accountID string, pageSize int, pageToken string) ([]APIKey, string, error) {
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
		c, ok := decodeKeyCursor(pageToken)
		if !ok {
			return nil, "", apierr.Invalid("page_token", "is not a token returned by ListApiKeys")
		}
		after = c
	}
	keys, err := s.store.APIKeys(ctx, accountID)
	if err != nil {
		return nil, "", err
	}
	pos := func(k APIKey) Cursor { return Cursor{CreateMillis: k.CreateTime.UnixMilli(), ID: k.ID} }
	slices.SortFunc(keys, func(a, b APIKey) int { return compareCursors(pos(a), pos(b)) })
	if after.ID != "" {
		keys = slices.DeleteFunc(keys, func(k APIKey) bool { return compareCursors(pos(k), after) <= 0 })
	}
	next := ""
	if len(keys) > pageSize {
		keys = keys[:pageSize]
		last := keys[len(keys)-1]
		next = encodeCursor(Cursor{CreateMillis: last.CreateTime.UnixMilli(), ID: last.ID})
	}
	return keys, next, nil
}

// RevokeAPIKey removes a key of the account: NotFound for ids the account
// does not hold (another account's included), FailedPrecondition for its
// last key.
func (s *Service) RevokeAPIKey(ctx context.Context, accountID, id string) (APIKey, error) {
	if id == "" {
		return APIKey{}, apierr.Invalid("id", "is required")
	}
	if !ids.Valid(ids.APIKeyID, id) {
		return APIKey{}, apierr.NotFound("API key", id)
	}
	return s.store.RevokeAPIKey(ctx, accountID, id, s.entry(ctx, accountID, auditlog.APIKeyRevoke, id, "API key revoked"))
}

func compareCursors(a, b Cursor) int {
	return cmp.Or(cmp.Compare(a.CreateMillis, b.CreateMillis), strings.Compare(a.ID, b.ID))
}

// decodeKeyCursor reads the page tokens ListAPIKeys makes (encodeCursor's
// format, with a key id).
func decodeKeyCursor(tok string) (Cursor, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return Cursor{}, false
	}
	ms, id, ok := strings.Cut(string(raw), ":")
	if !ok || !ids.Valid(ids.APIKeyID, id) {
		return Cursor{}, false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 {
		return Cursor{}, false
	}
	return Cursor{CreateMillis: n, ID: id}, true
}
