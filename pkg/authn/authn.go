// Package authn authenticates gRPC calls. Each service declares, per method,
// which credential it needs; customer API keys resolve to an account id that
// handlers read with AccountID.
package authn

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
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

// Config configures the interceptor.
type Config struct {
	Policy        Policy
	Resolver      Resolver
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

// AccountID returns the authenticated customer's account.
func AccountID(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(accountKey{}).(string)
	return id, ok && id != ""
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
		return WithAccount(ctx, acct), nil
	}
	return nil, status.Errorf(codes.PermissionDenied, "method %s is not exposed", method)
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
// the account of an API key, so customer calls do not each ask the registry.
const DefaultResolverTTL = 30 * time.Second

// CachingResolver remembers answers of a slower resolver for TTL
// (DefaultResolverTTL is the services' choice); an unknown key is
// remembered at most 2 s.
type CachingResolver struct {
	Next Resolver
	TTL  time.Duration
	mu   sync.Mutex
	m    map[string]cached
}

type cached struct {
	account string
	until   time.Time
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
	c.mu.Unlock()
	acct, err := c.Next.AccountForKey(ctx, key)
	if err != nil {
		return "", err
	}
	ttl := c.TTL
	if acct == "" {
		ttl = min(ttl, 2*time.Second)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) > 100_000 {
		c.m = make(map[string]cached)
	}
	c.m[h] = cached{account: acct, until: now.Add(ttl)}
	c.mu.Unlock()
	return acct, nil
}
