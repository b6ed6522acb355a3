package ssrf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// ValidateURL checks an endpoint URL against the policy and returns it parsed.
//
// The URL must be absolute, use https (or http when p.AllowHTTP), name a host,
// carry no user name/password and no fragment, be at most [MaxURLLength]
// bytes, and any explicit port must be 1–65535. The host must be a dotted
// decimal IPv4 address, a bracketed IPv6 address or a DNS name; numeric
// shorthands that some resolvers expand to IPv4 addresses (2130706433,
// 0x7f.1, 017700000001…) are refused. Names are resolved and the URL is
// refused if ANY resolved address is blocked.
//
// Every failure is an *[Error] whose message starts with "url: ".
func (p Policy) ValidateURL(ctx context.Context, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, invalidURL("url: is required")
	}
	if len(raw) > MaxURLLength {
		return nil, invalidURL(fmt.Sprintf("url: is longer than %d bytes", MaxURLLength))
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Report the parser's reason without repeating the (possibly long) URL.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, invalidURL("url: is not a valid URL: " + err.Error())
	}
	if !u.IsAbs() || u.Opaque != "" {
		return nil, invalidURL("url: must be an absolute URL such as https://example.com/webhook")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.AllowHTTP:
	case u.Scheme == "http":
		return nil, &Error{Kind: KindScheme, Message: `url: scheme "http" is not allowed; use https (http is accepted only with ENDPOINT_ALLOW_HTTP)`}
	default:
		return nil, &Error{Kind: KindScheme, Message: fmt.Sprintf("url: scheme %q is not allowed; use https", u.Scheme)}
	}
	if u.User != nil {
		return nil, invalidURL("url: must not contain a user name or password")
	}
	// '#' can only appear in a parsed URL as the fragment separator; checking
	// the raw string also catches an empty fragment ("…/hook#").
	if strings.Contains(raw, "#") {
		return nil, invalidURL("url: must not contain a fragment (#…)")
	}
	host := u.Hostname()
	if host == "" {
		return nil, invalidURL("url: host is missing")
	}
	if err := checkPort(u); err != nil {
		return nil, err
	}
	lit, isLiteral, herr := parseHost(host, strings.HasPrefix(u.Host, "["))
	if herr != nil {
		herr.Message = "url: " + herr.Message
		return nil, herr
	}

	if isLiteral {
		if reason, blocked := p.Blocked(lit); blocked {
			return nil, blockedError("url: host "+host+" is", reason)
		}
		return u, nil
	}
	addrs, err := p.resolver().LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, &Error{Kind: KindDNS, Message: fmt.Sprintf("url: cannot resolve host %s: %v", host, err), Err: err}
	}
	if len(addrs) == 0 {
		return nil, &Error{Kind: KindDNS, Message: fmt.Sprintf("url: host %s has no addresses", host)}
	}
	for _, a := range addrs {
		if reason, blocked := p.Blocked(a); blocked {
			return nil, blockedError(fmt.Sprintf("url: host %s resolves to %s,", host, a.Unmap()), reason)
		}
	}
	return u, nil
}

// checkPort validates an explicit port: present ports must be 1–65535.
func checkPort(u *url.URL) *Error {
	if strings.HasSuffix(u.Host, ":") {
		return invalidURL("url: port is empty")
	}
	port := u.Port()
	if port == "" {
		return nil
	}
	n, err := strconv.ParseUint(port, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return invalidURL(fmt.Sprintf("url: port %s is out of range (1-65535)", port))
	}
	return nil
}

// parseHost classifies a URL host (already stripped of brackets and port).
// It returns the address for an IP literal, or isLiteral=false for a DNS name
// that passed syntax checks. Error messages do not carry the "url: " prefix.
func parseHost(host string, bracketed bool) (addr netip.Addr, isLiteral bool, err *Error) {
	if a, perr := netip.ParseAddr(host); perr == nil {
		switch {
		case a.Zone() != "":
			return netip.Addr{}, false, invalidURL(fmt.Sprintf("host %s: IPv6 zones are not allowed", host))
		case bracketed != a.Is6():
			// An IPv6 literal must be bracketed and an IPv4 one must not be.
			return netip.Addr{}, false, invalidURL(fmt.Sprintf("host %s is not a valid IP address literal", host))
		}
		return a, true, nil
	}
	if bracketed {
		return netip.Addr{}, false, invalidURL(fmt.Sprintf("host %s is not a valid IPv6 address", host))
	}
	if looksNumeric(host) {
		return netip.Addr{}, false, invalidURL(fmt.Sprintf("host %s is not a valid host name or IP address (write IPv4 addresses as four decimal numbers, e.g. 93.184.216.34)", host))
	}
	if msg := checkHostName(host); msg != "" {
		return netip.Addr{}, false, invalidURL(fmt.Sprintf("host %s is not a valid host name: %s", host, msg))
	}
	return netip.Addr{}, false, nil
}

// looksNumeric reports whether host's last label is a number (decimal, octal
// or 0x-hex). No top-level domain is numeric, while inet_aton-style parsers
// (used by getaddrinfo and hence Go's cgo resolver) read such hosts as IPv4
// addresses: 2130706433, 0x7f.1, 0177.0.0.1 and 127.0.0.1. all mean
// 127.0.0.1. Refusing them outright avoids any disagreement between our
// check and the resolver.
func looksNumeric(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	digits := last
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		digits = last[2:]
		for i := 0; i < len(digits); i++ {
			if !isHex(digits[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// checkHostName applies DNS syntax rules: ASCII letters, digits, '-' and '_'
// in labels of 1–63 bytes, no label starting or ending with '-', at most 253
// bytes overall (one trailing dot allowed). It returns "" when host is valid,
// otherwise the reason. Internationalised names must be given in their
// ASCII (xn--) form because Go's resolver does not convert them.
func checkHostName(host string) string {
	name := strings.TrimSuffix(host, ".")
	if len(name) > 253 {
		return "longer than 253 characters"
	}
	for _, label := range strings.Split(name, ".") {
		switch {
		case label == "":
			return "empty label"
		case len(label) > 63:
			return "label longer than 63 characters"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "label starts or ends with '-'"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			case c >= 0x80:
				return "non-ASCII characters (use the xn-- form of internationalised names)"
			default:
				return fmt.Sprintf("invalid character %q", c)
			}
		}
	}
	return ""
}

func invalidURL(msg string) *Error { return &Error{Kind: KindInvalidURL, Message: msg} }
