package ssrf

import (
	"net/netip"
)

// blockedRange is one entry of the block list with the reason reported for it.
type blockedRange struct {
	prefix netip.Prefix
	reason string
}

// blockedRanges lists the refused ranges. Lookup is first match, so specific
// entries (metadata, broadcast) come before the ranges that contain them.
// Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32) are deliberately absent: they are not routable and are handy
// in tests.
var blockedRanges = []blockedRange{
	// Cloud instance metadata services.
	{netip.MustParsePrefix("169.254.169.254/32"), "metadata"}, // AWS, GCP, Azure, OpenStack…
	{netip.MustParsePrefix("fd00:ec2::254/128"), "metadata"},  // AWS IPv6 IMDS
	{netip.MustParsePrefix("168.63.129.16/32"), "metadata"},   // Azure WireServer
	{netip.MustParsePrefix("100.100.100.200/32"), "metadata"}, // Alibaba Cloud
	{netip.MustParsePrefix("192.0.0.192/32"), "metadata"},     // Oracle Cloud

	// IPv4.
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"}, // "this network"
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("100.64.0.0/10"), "CGNAT"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},   // IETF protocol assignments
	{netip.MustParsePrefix("192.88.99.0/24"), "reserved"}, // deprecated 6to4 relay anycast
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},

	// IPv6. Everything outside 2000::/3 is refused as "reserved" afterwards;
	// these entries only give more precise reasons.
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "private"},  // unique local
	{netip.MustParsePrefix("fec0::/10"), "private"}, // deprecated site-local
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "private"}, // local-use NAT64 (RFC 8215)
	{netip.MustParsePrefix("2001::/32"), "reserved"},     // Teredo: embeds an obfuscated IPv4
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking"},
}

var (
	nat64Prefix      = netip.MustParsePrefix("64:ff9b::/96") // well-known NAT64 (RFC 6052)
	sixToFourPrefix  = netip.MustParsePrefix("2002::/16")    // 6to4 (RFC 3056)
	globalUnicastSix = netip.MustParsePrefix("2000::/3")
)

// Blocked reports whether the guard refuses a connection to a, and why.
// Reasons are short nouns such as "loopback", "private", "link-local",
// "CGNAT", "metadata", "unspecified", "multicast", "broadcast", "reserved",
// "benchmarking" or "invalid".
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are judged as the IPv4 address
// they carry, as are NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses.
// Addresses inside p.AllowedCIDRs are never blocked.
func (p Policy) Blocked(a netip.Addr) (reason string, blocked bool) {
	if !a.IsValid() {
		return "invalid", true
	}
	a = a.WithZone("")
	if p.allowed(a) {
		return "", false
	}
	a = a.Unmap()
	if p.allowed(a) {
		return "", false
	}

	if a.Is6() {
		b := a.As16()
		switch {
		case nat64Prefix.Contains(a):
			return p.Blocked(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFourPrefix.Contains(a):
			return p.Blocked(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}

	for _, r := range blockedRanges {
		if r.prefix.Contains(a) {
			return r.reason, true
		}
	}
	if a.Is6() && !globalUnicastSix.Contains(a) {
		return "reserved", true
	}
	return "", false
}

// allowed reports whether a lies inside one of the operator's exemptions.
func (p Policy) allowed(a netip.Addr) bool {
	for _, pfx := range p.AllowedCIDRs {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// blockedError builds a "blocked" error. subject leads up to the reason, e.g.
// "url: host 10.0.0.5 is" or "host internal.example resolves to 10.0.0.5,";
// the result reads "… is a private address (blocked by the SSRF guard; …)".
func blockedError(subject, reason string) *Error {
	return &Error{
		Kind:    KindBlocked,
		Message: subject + " " + article(reason) + " " + reason + " address (" + allowHint + ")",
	}
}

// article returns the indefinite article for a reason noun.
func article(reason string) string {
	switch reason {
	case "unspecified", "invalid":
		return "an"
	}
	return "a"
}
