package registry

import (
	"context"

	"github.com/voxscriber/webhooks/pkg/auditlog"
)

// Store keeps the registry's state. Implementations return errors wrapping
// apierr.ErrNotFound for missing accounts and endpoints. Every write is
// atomic: a failed call stores nothing. Every change takes the audit entry
// that records it and writes it atomically with the change (pkg/auditlog).
type Store interface {
	// CreateAccount stores a new account and its first API key.
	CreateAccount(ctx context.Context, a Account, first APIKey, ent auditlog.Entry) error
	// ResolveKey returns the account of the live API key with k.Hash (and
	// k.ID), or "" when there is none, and records that the key was used
	// (at most once a minute). A key stored before keys were listed (an
	// account's only key then) is adopted into the account's list as k
	// (ID, Prefix, Name; created with the account) the first time it is
	// resolved.
	ResolveKey(ctx context.Context, k APIKey) (string, error)
	// CreateAPIKey adds a key to an existing account unless the account
	// has max keys already (an error wrapping apierr.ErrFailedPrecondition
	// naming the limit).
	CreateAPIKey(ctx context.Context, accountID string, k APIKey, max int, ent auditlog.Entry) error
	// APIKeys returns every key of an account, in no particular order.
	APIKeys(ctx context.Context, accountID string) ([]APIKey, error)
	// RevokeAPIKey removes a key of an account and returns it: NotFound
	// when the account has no key with that id, an error wrapping
	// apierr.ErrFailedPrecondition when it is the account's last one.
	// Key changes commit in one transaction on the account's slot, where
	// the audit entry of the change will join them.
	RevokeAPIKey(ctx context.Context, accountID, id string, ent auditlog.Entry) (APIKey, error)
	// GetAccount returns an account with its settings.
	GetAccount(ctx context.Context, accountID string) (Account, error)
	// UpdateSettings writes the settings fields named by mask of an
	// existing account.
	UpdateSettings(ctx context.Context, accountID string, s Settings, mask SettingsMask, ent auditlog.Entry) error

	// CreateEndpoint stores a new endpoint of e.AccountID.
	CreateEndpoint(ctx context.Context, e Endpoint, ent auditlog.Entry) error
	// GetEndpoint returns one endpoint of an account.
	GetEndpoint(ctx context.Context, accountID, id string) (Endpoint, error)
	// ListEndpoints returns up to limit endpoints created after the cursor
	// (all from the start when after is the zero Cursor), oldest first, and
	// whether more follow.
	ListEndpoints(ctx context.Context, accountID string, after Cursor, limit int) ([]Endpoint, bool, error)
	// AllEndpoints returns every endpoint of an account, oldest first.
	AllEndpoints(ctx context.Context, accountID string) ([]Endpoint, error)
	// UpdateEndpoint reads an endpoint, lets change modify it and, when
	// change reports true, writes it back atomically with *ent (when not
	// nil; change may fill in its Summary): if the endpoint was changed
	// concurrently, change runs again on the fresh copy. It returns the
	// endpoint as stored afterwards.
	UpdateEndpoint(ctx context.Context, accountID, id string, change func(*Endpoint) (bool, error), ent *auditlog.Entry) (Endpoint, error)
	// DeleteEndpoint removes an endpoint.
	DeleteEndpoint(ctx context.Context, accountID, id string, ent auditlog.Entry) error

	// EnsureKeyCheck stores sealed as the SECRETS_KEY check value unless
	// one is stored already, and returns the value stored afterwards.
	EnsureKeyCheck(ctx context.Context, sealed string) (string, error)
}
