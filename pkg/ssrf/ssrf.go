// Package ssrf is the single implementation of the endpoint URL policy (the
// "SSRF guard"): which webhook URLs may be registered and which addresses the
// delivery sender may connect to.
//
// The registry calls [Policy.ValidateURL] when an endpoint is created or
// changed; the delivery sender installs [Policy.DialContext] in its
// http.Transport so the same rules are enforced again at connect time, which
// catches DNS records that change after registration (DNS rebinding).
package ssrf

import (
	"context"
	"fmt"
	"github.com/voxscriber/webhooks/pkg/config"
	"net"
	"net/netip"
	"strings"
)

// Error kinds reported in [Error.Kind].
const (
	KindInvalidURL = "invalid_url" // malformed URL or host
	KindScheme     = "scheme"      // scheme other than https (or http when allowed)
	KindBlocked    = "blocked"     // the host is, or resolves to, a blocked address
	KindDNS        = "dns"         // the host name could not be resolved
)

// MaxURLLength is the longest endpoint URL accepted, in bytes.
const MaxURLLength = 2048

// allowHint tells operators how to lift a block; it is part of every
// "blocked" message.
const allowHint = "blocked by the SSRF guard; allow it with ENDPOINT_ALLOWED_CIDRS"

// Policy is the endpoint URL policy. The zero value is the strict production
// policy: https only, every non-public address refused, system DNS resolver.
// A Policy is safe for concurrent use as long as its fields are not modified.
type Policy struct {
	// AllowHTTP accepts http:// URLs (ENDPOINT_ALLOW_HTTP, development only).
	AllowHTTP bool
	// AllowedCIDRs are exempt from the guard (ENDPOINT_ALLOWED_CIDRS), e.g.
	// 127.0.0.0/8 and ::1/128 in development and tests.
	AllowedCIDRs []netip.Prefix
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
}

// Resolver resolves a host name to addresses. *net.Resolver implements it;
// tests supply fakes.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Error is a policy violation or resolution failure. Kind is one of the Kind*
// constants; Message is a complete, user-facing sentence fragment that names
// the problem. Err, when set, is the underlying cause (for example a
// *net.DNSError) and is reachable through errors.As / errors.Is.
type Error struct {
	Kind    string
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

func (p Policy) resolver() Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	return net.DefaultResolver
}

// ParseCIDRs parses a comma-separated list of CIDR prefixes such as
// "127.0.0.0/8, ::1/128". Bare addresses are accepted as single-address
// prefixes (/32 or /128), prefixes are masked to their network address, and
// IPv4-mapped IPv6 prefixes are converted to IPv4 (addresses are unmapped
// before they are checked). Empty entries are ignored; an empty string yields
// no prefixes. The error names the offending entry.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		pfx, err := parseCIDR(entry)
		if err != nil {
			return nil, fmt.Errorf("invalid CIDR %q: %w", entry, err)
		}
		out = append(out, pfx)
	}
	return out, nil
}

func parseCIDR(entry string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(entry, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(entry); err != nil {
			return netip.Prefix{}, err
		}
	} else {
		a, err := netip.ParseAddr(entry)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("IPv6 zones are not allowed")
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	return pfx.Masked(), nil
}

// FromEnv reads the policy from ENDPOINT_ALLOW_HTTP and
// ENDPOINT_ALLOWED_CIDRS; bad values are recorded in e.
func FromEnv(e *config.Env) Policy {
	p := Policy{AllowHTTP: e.Bool("ENDPOINT_ALLOW_HTTP", false)}
	raw := e.String("ENDPOINT_ALLOWED_CIDRS", "")
	cidrs, err := ParseCIDRs(raw)
	if err != nil {
		e.Fail("ENDPOINT_ALLOWED_CIDRS", raw, err)
	}
	p.AllowedCIDRs = cidrs
	return p
}
