package ssrf_test

import (
	"strings"
	"testing"

	"github.com/voxscriber/webhooks/pkg/config"
	"github.com/voxscriber/webhooks/pkg/ssrf"
)

// TestProxyURLsAreParsedWithDefaultPortsAndMaskedPasswords: the forms an
// operator writes in DELIVERY_PROXY_URL, and how the proxy is then shown.
func TestProxyURLsAreParsedWithDefaultPortsAndMaskedPasswords(t *testing.T) {
	for _, c := range []struct{ raw, addr, shown string }{
		{"http://egress.internal:3128", "egress.internal:3128", "http://egress.internal:3128"},
		{"http://egress.internal", "egress.internal:80", "http://egress.internal:80"},
		{"https://egress.example.com/", "egress.example.com:443", "https://egress.example.com:443"},
		{"http://10.0.0.9:3128", "10.0.0.9:3128", "http://10.0.0.9:3128"},
		{"http://[fd00::9]:3128", "[fd00::9]:3128", "http://[fd00::9]:3128"},
		{"http://svc:s3cr3t@egress:3128", "egress:3128", "http://svc:xxxxx@egress:3128"},
	} {
		p, err := ssrf.ParseProxyURL(c.raw)
		if err != nil {
			t.Errorf("%s: %v", c.raw, err)
			continue
		}
		if p.Addr() != c.addr || p.String() != c.shown || p.LogValue().String() != c.shown {
			t.Errorf("%s: addr %q shown %q, want %q %q", c.raw, p.Addr(), p.String(), c.addr, c.shown)
		}
	}
}

// TestBadProxyURLsAreRefusedAtStartUpNamingTheVariable: a bad
// DELIVERY_PROXY_URL stops the delivery process at start-up with a message
// naming the variable and the problem, and never the password.
func TestBadProxyURLsAreRefusedAtStartUpNamingTheVariable(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{"socks5://egress:1080", `scheme "socks5" is not supported`},
		{"egress:3128", `scheme "egress" is not supported`},
		{"http://", "host is missing"},
		{"http://egress:99999", "port 99999 is out of range"},
		{"http://egress:", "port is empty"},
		{"http://egress:3128/path", "without a path, query or fragment"},
		{"http://egress:3128?x=1", "without a path, query or fragment"},
		{"http://egress:3128#", "without a path, query or fragment"},
		{"http://user:s3cr3t@egress:port", "not a valid URL"},
		{"http://user:s3cr3t@egress:3128/x", "without a path"},
		{"ftp://user:s3cr3t@egress", `scheme "ftp"`},
	} {
		env := config.FromMap(map[string]string{"DELIVERY_PROXY_URL": c.raw})
		if p := ssrf.ProxyFromEnv(env); p != nil {
			t.Errorf("%s: accepted as %s", c.raw, p)
			continue
		}
		err := env.Err()
		if err == nil || !strings.Contains(err.Error(), "DELIVERY_PROXY_URL=") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming DELIVERY_PROXY_URL and %q", c.raw, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: the error shows the password: %v", c.raw, err)
		}
	}
}

// TestNoProxyURLMeansDirectDelivery: unset or empty, there is no proxy and
// no error.
func TestNoProxyURLMeansDirectDelivery(t *testing.T) {
	for _, m := range []map[string]string{{}, {"DELIVERY_PROXY_URL": " "}} {
		env := config.FromMap(m)
		if p := ssrf.ProxyFromEnv(env); p != nil || env.Err() != nil {
			t.Errorf("%v: proxy %v, error %v", m, p, env.Err())
		}
	}
}
