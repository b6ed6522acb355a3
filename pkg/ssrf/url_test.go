package ssrf_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/voxscriber/webhooks/pkg/ssrf"
)

// testResolver knows a few names; everything else is NXDOMAIN.
var testResolver = fakeResolver{
	"hooks.example.com": {"93.184.216.34", "2606:4700::1"},
	"v6only.example":    {"2606:4700::1"},
	"mapped.example":    {"::ffff:93.184.216.34"}, // as net.Resolver returns IPv4
	"internal.example":  {"10.0.0.5"},
	"mixed.example":     {"93.184.216.34", "192.168.1.10"},
	"metadata.example":  {"169.254.169.254"},
	"localhost":         {"127.0.0.1", "::1"},
	"dev.localhost":     {"127.0.0.1"},
}

func TestValidateURL(t *testing.T) {
	strict := ssrf.Policy{Resolver: testResolver}
	devAllow, err := ssrf.ParseCIDRs("127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	dev := ssrf.Policy{AllowHTTP: true, AllowedCIDRs: devAllow, Resolver: testResolver}
	httpOnly := ssrf.Policy{AllowHTTP: true, Resolver: testResolver}

	tests := []struct {
		name   string
		policy ssrf.Policy
		url    string
		kind   string // "" = accepted
		msg    string // substring of the message
	}{
		{"https name", strict, "https://hooks.example.com/webhooks?x=1", "", ""},
		{"https port", strict, "https://hooks.example.com:8443/webhooks", "", ""},
		{"https trailing dot", strict, "https://hooks.example.com./w", "", ""},
		{"upper-case", strict, "HTTPS://HOOKS.EXAMPLE.COM/w", "", ""},
		{"ipv6-only name", strict, "https://v6only.example/", "", ""},
		{"mapped answer", strict, "https://mapped.example/", "", ""},
		{"public IPv4 literal", strict, "https://93.184.216.34/hook", "", ""},
		{"public IPv6 literal", strict, "https://[2606:4700::1]:443/hook", "", ""},

		{"empty", strict, "", ssrf.KindInvalidURL, "required"},
		{"too long", strict, "https://hooks.example.com/" + strings.Repeat("a", 2048), ssrf.KindInvalidURL, "longer than 2048"},
		{"unparsable", strict, "https://exa mple.com/", ssrf.KindInvalidURL, "not a valid URL"},
		{"relative", strict, "/webhooks", ssrf.KindInvalidURL, "absolute"},
		{"scheme-relative", strict, "//hooks.example.com/", ssrf.KindInvalidURL, "absolute"},
		{"opaque", strict, "https:hooks.example.com", ssrf.KindInvalidURL, "absolute"},
		{"http refused", strict, "http://hooks.example.com/", ssrf.KindScheme, "ENDPOINT_ALLOW_HTTP"},
		{"http allowed", httpOnly, "http://hooks.example.com/", "", ""},
		{"ftp", httpOnly, "ftp://hooks.example.com/", ssrf.KindScheme, `"ftp"`},
		{"userinfo", strict, "https://user:pw@hooks.example.com/", ssrf.KindInvalidURL, "user name or password"},
		{"user only", strict, "https://user@hooks.example.com/", ssrf.KindInvalidURL, "user name"},
		{"fragment", strict, "https://hooks.example.com/#frag", ssrf.KindInvalidURL, "fragment"},
		{"empty fragment", strict, "https://hooks.example.com/#", ssrf.KindInvalidURL, "fragment"},
		{"no host", strict, "https:///path", ssrf.KindInvalidURL, "host is missing"},
		{"port only", strict, "https://:443/", ssrf.KindInvalidURL, "host is missing"},
		{"empty port", strict, "https://hooks.example.com:/", ssrf.KindInvalidURL, "port is empty"},
		{"port 0", strict, "https://hooks.example.com:0/", ssrf.KindInvalidURL, "out of range"},
		{"port too big", strict, "https://hooks.example.com:65536/", ssrf.KindInvalidURL, "out of range"},
		{"port huge", strict, "https://hooks.example.com:99999999999/", ssrf.KindInvalidURL, "out of range"},
		{"bad label", strict, "https://a..example.com/", ssrf.KindInvalidURL, "empty label"},
		{"hyphen label", strict, "https://-a.example.com/", ssrf.KindInvalidURL, "'-'"},
		{"non-ascii host", strict, "https://bücher.example/", ssrf.KindInvalidURL, "xn--"},
		{"ipv6 zone", strict, "https://[fe80::1%25eth0]/", ssrf.KindInvalidURL, "zone"},

		// Numeric IPv4 shorthands are refused rather than resolved.
		{"decimal", strict, "https://2130706433/", ssrf.KindInvalidURL, "four decimal numbers"},
		{"hex", strict, "https://0x7f000001/", ssrf.KindInvalidURL, "not a valid host"},
		{"hex dotted", strict, "https://0x7f.1/", ssrf.KindInvalidURL, "not a valid host"},
		{"octal", strict, "https://0177.0.0.1/", ssrf.KindInvalidURL, "not a valid host"},
		{"leading zeros", strict, "https://127.000.000.001/", ssrf.KindInvalidURL, "not a valid host"},
		{"short form", strict, "https://127.1/", ssrf.KindInvalidURL, "not a valid host"},
		{"trailing dot IP", strict, "https://127.0.0.1./", ssrf.KindInvalidURL, "not a valid host"},
		{"five parts", strict, "https://1.2.3.4.5/", ssrf.KindInvalidURL, "not a valid host"},

		// Blocked literals.
		{"loopback", strict, "https://127.0.0.1/", ssrf.KindBlocked, "url: host 127.0.0.1 is a loopback address (blocked by the SSRF guard; allow it with ENDPOINT_ALLOWED_CIDRS)"},
		{"private", strict, "https://10.0.0.5/", ssrf.KindBlocked, "url: host 10.0.0.5 is a private address (blocked by the SSRF guard; allow it with ENDPOINT_ALLOWED_CIDRS)"},
		{"unspecified", strict, "https://0.0.0.0/", ssrf.KindBlocked, "an unspecified address"},
		{"ipv6 loopback", strict, "https://[::1]/", ssrf.KindBlocked, "loopback"},
		{"mapped loopback", strict, "https://[::ffff:127.0.0.1]/", ssrf.KindBlocked, "loopback"},
		{"mapped hex loopback", strict, "https://[::ffff:7f00:1]/", ssrf.KindBlocked, "loopback"},
		{"metadata", strict, "https://169.254.169.254/latest/meta-data/", ssrf.KindBlocked, "metadata"},
		{"ipv6 metadata", strict, "https://[fd00:ec2::254]/", ssrf.KindBlocked, "metadata"},
		{"CGNAT", strict, "https://100.64.0.1/", ssrf.KindBlocked, "CGNAT"},
		{"ULA", strict, "https://[fc00::1]/", ssrf.KindBlocked, "private"},

		// Blocked names: ANY blocked answer refuses the URL.
		{"localhost", strict, "https://localhost/", ssrf.KindBlocked, "url: host localhost resolves to 127.0.0.1, a loopback address"},
		{"private name", strict, "https://internal.example/", ssrf.KindBlocked, "resolves to 10.0.0.5, a private address"},
		{"mixed answers", strict, "https://mixed.example/", ssrf.KindBlocked, "192.168.1.10"},
		{"metadata name", strict, "https://metadata.example/", ssrf.KindBlocked, "metadata"},
		{"nxdomain", strict, "https://nope.example/", ssrf.KindDNS, "url: cannot resolve host nope.example"},

		// Development allow-list.
		{"dev loopback", dev, "http://127.0.0.1:8080/hook", "", ""},
		{"dev *.localhost", dev, "http://dev.localhost:8080/hook", "", ""},
		{"dev localhost ::1", dev, "http://localhost:8080/hook", ssrf.KindBlocked, "::1"},
		{"dev private", dev, "http://10.0.0.5/", ssrf.KindBlocked, "private"},
		{"http without allow-http", ssrf.Policy{AllowedCIDRs: devAllow}, "http://127.0.0.1:8080/", ssrf.KindScheme, "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := tt.policy.ValidateURL(context.Background(), tt.url)
			if tt.kind == "" {
				if err != nil {
					t.Fatalf("ValidateURL(%q): %v", tt.url, err)
				}
				if u == nil || u.Hostname() == "" {
					t.Fatalf("ValidateURL(%q) = %v, want a URL with a host", tt.url, u)
				}
				return
			}
			var se *ssrf.Error
			if !errors.As(err, &se) {
				t.Fatalf("ValidateURL(%q) = %v, %v; want *ssrf.Error kind %s", tt.url, u, err, tt.kind)
			}
			if se.Kind != tt.kind || !strings.Contains(se.Message, tt.msg) {
				t.Errorf("ValidateURL(%q) = [%s] %q; want [%s] containing %q", tt.url, se.Kind, se.Message, tt.kind, tt.msg)
			}
			if !strings.HasPrefix(se.Message, "url: ") {
				t.Errorf("message %q should start with \"url: \"", se.Message)
			}
		})
	}
}

func TestValidateURLDNSErrorUnwraps(t *testing.T) {
	_, err := ssrf.Policy{Resolver: testResolver}.ValidateURL(context.Background(), "https://nope.example/")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("error %v should wrap the resolver's *net.DNSError", err)
	}
}

// TestValidateURLSystemResolver checks "localhost" with the real resolver
// (answered from /etc/hosts, no network needed). Every machine that runs
// the tests resolves localhost (scripts/test-prereqs.sh checks it), so a
// DNS failure here is a failure, not a reason to skip.
func TestValidateURLSystemResolver(t *testing.T) {
	_, err := ssrf.Policy{}.ValidateURL(context.Background(), "https://localhost/")
	var se *ssrf.Error
	if !errors.As(err, &se) {
		t.Fatalf("ValidateURL(https://localhost/) = %v; want *ssrf.Error", err)
	}
	if se.Kind == ssrf.KindDNS {
		t.Fatalf("localhost does not resolve here (add \"127.0.0.1 localhost\" to /etc/hosts): %v", err)
	}
	if se.Kind != ssrf.KindBlocked || !strings.Contains(se.Message, "loopback") {
		t.Errorf("got [%s] %s; want a loopback block", se.Kind, se.Message)
	}
}

func FuzzValidateURL(f *testing.F) {
	for _, seed := range []string{
		"https://hooks.example.com/webhooks",
		"https://93.184.216.34:8443/x?y=z",
		"https://[2606:4700::1]/",
		"http://hooks.example.com/",
		"https://user@hooks.example.com/",
		"https://127.0.0.1/",
		"https://[::ffff:10.0.0.1]/",
		"https://0x7f.1/",
		"https://2130706433/",
		"https://hooks.example.com/#x",
		"https://[fe80::1%25en0]:99/",
		"https://xn--bcher-kva.example./",
		"javascript:alert(1)",
		"",
	} {
		f.Add(seed)
	}
	// Resolve every name to a public or a private address depending on its
	// length, without touching the network.
	resolver := resolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if len(host)%2 == 0 {
			return []netip.Addr{netip.MustParseAddr("10.0.0.1")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	})
	p := ssrf.Policy{Resolver: resolver}

	f.Fuzz(func(t *testing.T, raw string) {
		u, err := p.ValidateURL(context.Background(), raw)
		if err != nil {
			var se *ssrf.Error
			if !errors.As(err, &se) || se.Kind == "" || se.Message == "" {
				t.Fatalf("ValidateURL(%q) returned a non-*ssrf.Error or empty error: %#v", raw, err)
			}
			return
		}
		if u.Scheme != "https" {
			t.Fatalf("ValidateURL(%q) accepted scheme %q", raw, u.Scheme)
		}
		host := u.Hostname()
		if host == "" || u.User != nil || u.Fragment != "" || len(raw) > ssrf.MaxURLLength {
			t.Fatalf("ValidateURL(%q) accepted %#v", raw, u)
		}
		if a, err := netip.ParseAddr(host); err == nil {
			if reason, blocked := p.Blocked(a); blocked {
				t.Fatalf("ValidateURL(%q) accepted a %s address", raw, reason)
			}
		}
	})
}

type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}
