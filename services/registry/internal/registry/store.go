package registry

import "context"

// Store keeps the registry's state. Implementations return errors wrapping
// apierr.ErrNotFound for missing accounts and endpoints. Every write is
// atomic: a failed call stores nothing.
type Store interface {
	// CreateAccount stores a new account and the hash of its first API key.
	CreateAccount(ctx context.Context, a Account, keyHash string) error
	// AccountForKeyHash returns the account owning an API key hash, or ""
	// when no key has that hash.
	AccountForKeyHash(ctx context.Context, keyHash string) (string, error)
	// GetAccount returns an account with its settings.
	GetAccount(ctx context.Context, accountID string) (Account, error)
	// UpdateSettings writes the settings fields named by mask of an
	// existing account.
	UpdateSettings(ctx context.Context, accountID string, s Settings, mask SettingsMask) error

	// CreateEndpoint stores a new endpoint of e.AccountID.
	CreateEndpoint(ctx context.Context, e Endpoint) error
	// GetEndpoint returns one endpoint of an account.
	GetEndpoint(ctx context.Context, accountID, id string) (Endpoint, error)
	// ListEndpoints returns up to limit endpoints created after the cursor
	// (all from the start when after is the zero Cursor), oldest first, and
	// whether more follow.
	ListEndpoints(ctx context.Context, accountID string, after Cursor, limit int) ([]Endpoint, bool, error)
	// AllEndpoints returns every endpoint of an account, oldest first.
	AllEndpoints(ctx context.Context, accountID string) ([]Endpoint, error)
	// UpdateEndpoint reads an endpoint, lets change modify it and, when
	// change reports true, writes it back atomically: if the endpoint was
	// changed concurrently, change runs again on the fresh copy. It returns
	// the endpoint as stored afterwards.
	UpdateEndpoint(ctx context.Context, accountID, id string, change func(*Endpoint) (bool, error)) (Endpoint, error)
	// DeleteEndpoint removes an endpoint.
	DeleteEndpoint(ctx context.Context, accountID, id string) error

	// EnsureKeyCheck stores sealed as the SECRETS_KEY check value unless
	// one is stored already, and returns the value stored afterwards.
	EnsureKeyCheck(ctx context.Context, sealed string) (string, error)
}
