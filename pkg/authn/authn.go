// Package authn authenticates gRPC calls. Each service declares, per method,
// which credential it needs; customer API keys resolve to an account id that
// handlers read with AccountID.
package authn

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/voxscriber/webhooks/pkg/ids"
)

// Role is the credential a method requires.
type Role int

// Roles.
const (
	// Deny refuses the call (methods missing from a Policy).
	Deny Role = iota
	// Public needs no credential (health, reflection).
	Public
	// Customer needs a customer API key.
	Customer
	// Producer needs PRODUCER_TOKEN.
	Producer
	// Admin needs ADMIN_TOKEN.
	Admin
	// Internal needs the suite's internal credential (INTERNAL_TOKEN), always:
	// a service with none configured refuses internal calls (internal.go).
	Internal
)

// GatewayMetadata marks calls forwarded by the REST gateway.
const GatewayMetadata = "x-voxscriber-gateway"

// Policy maps full method names ("/pkg.Service/Method") to roles. Methods
// of services not in the map whose prefix is listed in PublicPrefixes are
// public.
type Policy map[string]Role

// Resolver turns an API key into an account id.
type Resolver interface {
	AccountForKey(ctx context.Context, apiKey string) (string, error)
}

// Limiter limits the calls of each API key (pkg/ratelimit keeps one
// limiter for the whole deployment in Redis). Allow takes one call of the
// key named by keyID (KeyID) and answers 0 when it may go ahead, else how
// long until it may.
type Limiter interface {
	Allow(ctx context.Context, keyID string) (retryAfter time.Duration, err error)
}

// Config configures the interceptor.
type Config struct {
	Policy   Policy
	Resolver Resolver
	// Limiter, when set, limits every Customer call per API key, after the
	// key is resolved (so unknown keys are refused without counting).
	// Producer, admin and internal calls are never limited by it.
	Limiter       Limiter
	AdminToken    string
	ProducerToken string
	InternalToken string
	// MutualTLS: clients present verified certificates (pkg/serve sets it
	// when the server has a CA); internal methods then also need a peer
	// named in Callers.
	MutualTLS bool
	// Callers names, for each internal method, the services that may call
	// it; Identities says which certificate is which service.
	Callers    Callers
	Identities Identities
}

type accountKey struct{}

type apiKeyKey struct{}

// AccountID returns the authenticated customer's account.
func AccountID(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(accountKey{}).(string)
	return id, ok && id != ""
}

// KeyOf returns the id and prefix of the API key the customer's call was
// made with (the actor of an audit entry), when it was made with one.
func KeyOf(ctx context.Context) (id, prefix string, ok bool) {
	k, ok := ctx.Value(apiKeyKey{}).([2]string)
	return k[0], k[1], ok
}

// WithKey returns ctx carrying the id and prefix of the caller's API key.
func WithKey(ctx context.Context, id, prefix string) context.Context {
	return context.WithValue(ctx, apiKeyKey{}, [2]string{id, prefix})
}

// KeyPrefixLen is how many leading characters of an API key ("vsk_" and 8
// more) identify it in lists and logs.
const KeyPrefixLen = len(ids.APIKey) + 8

// KeyPrefix returns the part of an API key shown in lists and logs.
func KeyPrefix(apiKey string) string {
	if len(apiKey) <= KeyPrefixLen {
		return apiKey
	}
	return apiKey[:KeyPrefixLen]
}

// KeyID is the id of the API key whose hash (HashKey) is keyHash: derived
// from the hash, so every service names a key the same way without a
// lookup, and keys stored before keys had ids get the same id wherever
// they are first seen. It reveals nothing of the key.
func KeyID(keyHash string) string {
	return ids.Derive(ids.APIKeyID, "", "api key id", keyHash)
}

// WithAccount returns ctx carrying an authenticated account (tests and
// in-process callers).
func WithAccount(ctx context.Context, accountID string) context.Context {
	return context.WithValue(ctx, accountKey{}, accountID)
}

// HashKey is how API keys are stored: hex SHA-256.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

var publicPrefixes = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

// Unary returns the server interceptor.
func (c Config) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := c.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns the stream interceptor (health watch, reflection).
func (c Config) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if _, err := c.authorize(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

func (c Config) authorize(ctx context.Context, method string) (context.Context, error) {
	role, ok := c.Policy[method]
	if !ok {
		for _, p := range publicPrefixes {
			if strings.HasPrefix(method, p) {
				role = Public
			}
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	token := bearer(md)
	switch role {
	case Public:
		return ctx, nil
	case Admin:
		if c.AdminToken == "" {
			return nil, status.Error(codes.PermissionDenied, "the admin API is off: set ADMIN_TOKEN to enable it")
		}
		if !equal(token, c.AdminToken) {
			return nil, status.Error(codes.Unauthenticated, "this call needs Authorization: Bearer <ADMIN_TOKEN>")
		}
		return ctx, nil
	case Producer:
		if c.ProducerToken == "" {
			if len(md.Get(GatewayMetadata)) > 0 {
				return nil, status.Error(codes.PermissionDenied, "REST publishing is off: set PRODUCER_TOKEN to enable it")
			}
			return ctx, nil
		}
		if !equal(token, c.ProducerToken) {
			return nil, status.Error(codes.Unauthenticated, "publishing needs Authorization: Bearer <PRODUCER_TOKEN>")
		}
		return ctx, nil
	case Internal:
		return c.internal(ctx, method, token)
	case Customer:
		if token == "" {
			return nil, status.Error(codes.Unauthenticated, "missing Authorization: Bearer <api key>")
		}
		if c.Resolver == nil {
			return nil, status.Error(codes.Internal, "no API key resolver configured")
		}
		acct, err := c.Resolver.AccountForKey(ctx, token)
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return nil, err
			}
			return nil, status.Error(codes.Unavailable, "cannot check the API key right now")
		}
		if acct == "" {
			return nil, status.Error(codes.Unauthenticated, "unknown or revoked API key")
		}
		id := KeyID(HashKey(token))
		if c.Limiter != nil {
			wait, err := c.Limiter.Allow(ctx, id)
			if err != nil {
				return nil, status.Error(codes.Unavailable, "cannot check the API key's rate limit right now")
			}
			if wait > 0 {
				return nil, RateLimited(id, wait)
			}
		}
		return WithKey(WithAccount(ctx, acct), id, KeyPrefix(token)), nil
	}
	return nil, status.Errorf(codes.PermissionDenied, "method %s is not exposed", method)
}

// RateLimited is the answer to a call over its API key's rate limit:
// ResourceExhausted with a RetryInfo detail saying when to try again (the
// gateway turns it into 429 with a Retry-After header).
func RateLimited(keyID string, retryAfter time.Duration) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"API key %s is over its rate limit (API_RATE_LIMIT requests per second, bursts up to API_RATE_BURST); retry in %s",
		keyID, retryAfter.Round(time.Millisecond)))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)}); err == nil {
		st = d
	}
	return st.Err()
}

// RetryAfter returns the delay of the RetryInfo detail of a status error
// in whole seconds, rounded up (at least 1), as an HTTP Retry-After header
// wants it; ok is false when err carries none.
func RetryAfter(err error) (seconds int, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, isRI := d.(*errdetails.RetryInfo); isRI {
			return max(1, int(math.Ceil(ri.GetRetryDelay().AsDuration().Seconds()))), true
		}
	}
	return 0, false
}

func bearer(md metadata.MD) string {
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		if t, ok := strings.CutPrefix(v, "bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return ""
}

func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Token is a per-RPC credential sending "authorization: Bearer <token>".
type Token string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t Token) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials; the
// suite's internal traffic may be plaintext inside the cluster.
func (Token) RequireTransportSecurity() bool { return false }

var _ credentials.PerRPCCredentials = Token("")

// DefaultResolverTTL is how long the services' CachingResolver remembers
// the account of an API key, so customer calls do not each ask the
// registry. It bounds how long a revoked key still works when a change
// announcement is lost: revocation must hold everywhere within 2 s, so the
// bound is 1 s (plus the registry call); announcements on the change feed
// (changefeed.Follow) drop entries sooner.
const DefaultResolverTTL = 1 * time.Second

// CachingResolver remembers answers of a slower resolver for TTL
// (DefaultResolverTTL when 0); an unknown key is remembered at most 2 s.
// Invalidate and InvalidateAll (the change feed's changefeed.Cache) drop
// entries at once: a revoked key is refused as soon as the announcement
// arrives, and within TTL when it is lost.
type CachingResolver struct {
	Next Resolver
	TTL  time.Duration
	mu   sync.Mutex
	m    map[string]cached
	// gen counts invalidations: a lookup that started before one does not
	// store its (possibly stale) answer.
	gen uint64
}

type cached struct {
	account string
	until   time.Time
}

// NewCachingResolver returns a CachingResolver over next with
// DefaultResolverTTL.
func NewCachingResolver(next Resolver) *CachingResolver {
	return &CachingResolver{Next: next, TTL: DefaultResolverTTL}
}

// AccountForKey implements Resolver. Unknown keys are remembered for a
// short time too, so a flood of bad keys does not reach the registry.
func (c *CachingResolver) AccountForKey(ctx context.Context, key string) (string, error) {
	h := HashKey(key)
	now := time.Now()
	c.mu.Lock()
	if e, ok := c.m[h]; ok && now.Before(e.until) {
		c.mu.Unlock()
		return e.account, nil
	}
	gen := c.gen
	c.mu.Unlock()
	acct, err := c.Next.AccountForKey(ctx, key)
	if err != nil {
		return "", err
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = DefaultResolverTTL
	}
	if acct == "" {
		ttl = min(ttl, 2*time.Second)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return acct, nil // invalidated meanwhile: the answer may predate the change
	}
	if c.m == nil || len(c.m) > 100_000 {
		c.m = make(map[string]cached)
	}
	c.m[h] = cached{account: acct, until: now.Add(ttl)} // measured from the lookup's start
	return acct, nil
}

// Invalidate drops the cached keys of an account (its keys changed).
func (c *CachingResolver) Invalidate(account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for h, e := range c.m {
		if e.account == account {
			delete(c.m, h)
		}
	}
}

// InvalidateAll drops every cached key: announcements may have been missed
// (the change feed's subscription was made again).
func (c *CachingResolver) InvalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m = nil
}
