package ssrf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// minDialShare is the least time one address gets when a dial deadline is
// shared between several addresses (the same floor net.Dialer uses).
const minDialShare = 2 * time.Second

// DialContext returns a dial function for http.Transport.DialContext that
// enforces the policy at connect time.
//
// The function resolves the host itself (with p's Resolver), drops blocked
// addresses and dials the allowed ones in resolver order until one connects,
// sharing the context deadline between them. If no address is allowed it
// fails with an *[Error] of Kind "blocked"; a resolution failure is an *Error
// of Kind "dns" wrapping the resolver's error. Errors are *net.OpError values
// wrapping the *Error, so errors.As finds it through http.Client errors.
//
// As a second line of defence the dialer's Control hook re-checks the actual
// remote address immediately before connect(2). Settings of d (timeouts,
// keep-alive, local address, an existing Control/ControlContext hook) are
// kept; d may be nil. d is copied, not modified.
//
// Only tcp, tcp4 and tcp6 are supported. The transport must not use a proxy
// (set http.Transport.Proxy to nil), or it would dial the proxy instead of
// the endpoint; to send through an egress proxy use [Policy.ProxyDialContext],
// which applies the same checks.
func (p Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var dialer net.Dialer
	if d != nil {
		dialer = *d
	}
	prevCtx, prev := dialer.ControlContext, dialer.Control
	dialer.Control = nil
	dialer.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		if err := p.checkRemote(address); err != nil {
			return err
		}
		switch {
		case prevCtx != nil:
			return prevCtx(ctx, network, address, c)
		case prev != nil:
			return prev(network, address, c)
		}
		return nil
	}

	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		targets, err := p.checkedTargets(ctx, network, addr)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		return dialEach(ctx, targets, func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
			return dialer.DialContext(ctx, network, ap.String())
		})
	}
}

// checkedTargets is the guard's half of every dial, direct or through an
// egress proxy: it parses addr ("host:port"), resolves the host with p's
// Resolver and returns the allowed addresses of network's family with the
// port, in resolver order. Errors are *Error values (or a parse error).
func (p Policy) checkedTargets(ctx context.Context, network, addr string) ([]netip.AddrPort, error) {
	var lookupNet string
	switch network {
	case "tcp":
		lookupNet = "ip"
	case "tcp4":
		lookupNet = "ip4"
	case "tcp6":
		lookupNet = "ip6"
	default:
		return nil, &Error{Kind: KindBlocked, Message: fmt.Sprintf("network %q is not allowed by the SSRF guard", network)}
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("invalid port %q", portStr)
	}
	addrs, err := p.dialTargets(ctx, lookupNet, host)
	if err != nil {
		return nil, err
	}
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = netip.AddrPortFrom(a, uint16(port))
	}
	return out, nil
}

// dialEach dials the targets in order until one connects, sharing ctx's
// deadline between them, and returns the first error when none does.
func dialEach(ctx context.Context, targets []netip.AddrPort, dial func(context.Context, netip.AddrPort) (net.Conn, error)) (net.Conn, error) {
	var firstErr error
	for i, ap := range targets {
		dctx, cancel := shareDeadline(ctx, len(targets)-i)
		conn, err := dial(dctx, ap)
		cancel()
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// dialTargets resolves host and returns the allowed addresses of the wanted
// family ("ip", "ip4" or "ip6"), unmapped, in resolver order.
func (p Policy) dialTargets(ctx context.Context, lookupNet, host string) ([]netip.Addr, error) {
	// SplitHostPort has already removed the brackets of an IPv6 literal.
	lit, isLiteral, herr := parseHost(host, isIPv6Literal(host))
	if herr != nil {
		return nil, herr
	}
	if isLiteral {
		if reason, blocked := p.Blocked(lit); blocked {
			return nil, blockedError("host "+host+" is", reason)
		}
		return []netip.Addr{lit.Unmap()}, nil
	}

	addrs, err := p.resolver().LookupNetIP(ctx, lookupNet, host)
	if err != nil {
		return nil, &Error{Kind: KindDNS, Message: fmt.Sprintf("cannot resolve host %s: %v", host, err), Err: err}
	}
	var allowed []netip.Addr
	var firstBlocked *Error
	for _, a := range addrs {
		a = a.Unmap()
		if (lookupNet == "ip4" && !a.Is4()) || (lookupNet == "ip6" && !a.Is6()) {
			continue
		}
		if reason, blocked := p.Blocked(a); blocked {
			if firstBlocked == nil {
				firstBlocked = blockedError(fmt.Sprintf("host %s resolves to %s,", host, a), reason)
			}
			continue
		}
		allowed = append(allowed, a)
	}
	switch {
	case len(allowed) > 0:
		return allowed, nil
	case firstBlocked != nil:
		return nil, firstBlocked
	}
	return nil, &Error{Kind: KindDNS, Message: fmt.Sprintf("host %s has no usable addresses", host)}
}

// checkRemote is the Control-hook check of the concrete remote "ip:port".
func (p Policy) checkRemote(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &Error{Kind: KindBlocked, Message: fmt.Sprintf("remote address %q is not an IP address (refused by the SSRF guard)", address)}
	}
	if reason, blocked := p.Blocked(ap.Addr()); blocked {
		return blockedError("remote address "+ap.Addr().Unmap().String()+" is", reason)
	}
	return nil
}

// isIPv6Literal reports whether host parses as an IPv6 address.
func isIPv6Literal(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is6()
}

// shareDeadline gives one of n remaining addresses its share of ctx's
// deadline, never less than minDialShare unless less time is left.
func shareDeadline(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || n <= 1 {
		return context.WithCancel(ctx)
	}
	left := time.Until(deadline)
	share := left / time.Duration(n)
	if share < minDialShare {
		share = min(minDialShare, left)
	}
	return context.WithTimeout(ctx, share)
}
