package redisx

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestClusterURLs(t *testing.T) {
	for _, tc := range []struct {
		url   string
		addrs []string
		user  string
		pass  string
		tls   bool
	}{
		{url: "redis-cluster://a:7000,b:7001,c:7002", addrs: []string{"a:7000", "b:7001", "c:7002"}},
		{url: "redis-cluster://u:secret@a:7000,b:7001/", addrs: []string{"a:7000", "b:7001"}, user: "u", pass: "secret"},
		{url: "rediss-cluster://:secret@redis.example.com:6380,redis2.example.com:6380?dial_timeout=3s",
			addrs: []string{"redis.example.com:6380", "redis2.example.com:6380"}, pass: "secret", tls: true},
	} {
		c, err := NewClient(tc.url)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		cc, ok := c.(*redis.ClusterClient)
		if !ok {
			t.Fatalf("%s: got %T, want a cluster client", tc.url, c)
		}
		o := cc.Options()
		if strings.Join(o.Addrs, " ") != strings.Join(tc.addrs, " ") || o.Username != tc.user || o.Password != tc.pass {
			t.Errorf("%s: addrs %v user %q pass %q", tc.url, o.Addrs, o.Username, o.Password)
		}
		if (o.TLSConfig != nil) != tc.tls {
			t.Errorf("%s: TLS %v, want %v", tc.url, o.TLSConfig != nil, tc.tls)
		} else if tc.tls && o.TLSConfig.ServerName != "redis.example.com" {
			t.Errorf("%s: TLS server name %q", tc.url, o.TLSConfig.ServerName)
		}
		if strings.Contains(Redact(tc.url), "secret") && tc.pass != "" {
			t.Errorf("Redact(%s) = %s: shows the password", tc.url, Redact(tc.url))
		}
		_ = c.Close()
	}
	if _, err := NewClient("redis-cluster://a:7000?dial_timeout=%zz"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad query: %v", err)
	}
}
