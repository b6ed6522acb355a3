package ssrf_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/voxscriber/webhooks/pkg/ssrf"
)

func TestBlocked(t *testing.T) {
	tests := []struct {
		addr   string
		reason string // "" = allowed
	}{
		// Public addresses, including documentation ranges.
		{"93.184.216.34", ""},
		{"8.8.8.8", ""},
		{"2606:4700::1", ""},
		{"2a00:1450:4001:82b::200e", ""},
		{"192.0.2.10", ""},
		{"2001:db8::1", ""},
		{"172.32.0.1", ""},  // just outside 172.16.0.0/12
		{"100.128.0.1", ""}, // just outside 100.64.0.0/10

		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"10.0.0.5", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"fc00::1", "private"},
		{"fd00::1", "private"},
		{"fec0::1", "private"},
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.255", "CGNAT"},
		{"169.254.169.254", "metadata"},
		{"fd00:ec2::254", "metadata"},
		{"168.63.129.16", "metadata"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"192.0.0.8", "reserved"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"240.0.0.1", "reserved"},
		{"100::1", "reserved"},   // discard-only
		{"::7f00:1", "reserved"}, // deprecated IPv4-compatible
		{"2001::1", "reserved"},  // Teredo
		{"3fff::1", ""},          // documentation (RFC 9637), inside 2000::/3
		{"4000::1", "reserved"},  // outside global unicast

		// IPv4 embedded in IPv6 is judged as the IPv4 address.
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:7f00:1", "loopback"},
		{"::ffff:10.0.0.5", "private"},
		{"::ffff:169.254.169.254", "metadata"},
		{"::ffff:93.184.216.34", ""},
		{"64:ff9b::127.0.0.1", "loopback"},
		{"64:ff9b::a9fe:a9fe", "metadata"},
		{"64:ff9b::93.184.216.34", ""},
		{"2002:7f00:1::1", "loopback"}, // 6to4 for 127.0.0.1
		{"2002:5db8:d822::1", ""},      // 6to4 for 93.184.216.34
	}
	var p ssrf.Policy
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			reason, blocked := p.Blocked(netip.MustParseAddr(tt.addr))
			if blocked != (tt.reason != "") || reason != tt.reason {
				t.Errorf("Blocked(%s) = %q, %v; want %q, %v", tt.addr, reason, blocked, tt.reason, tt.reason != "")
			}
		})
	}
}

func TestBlockedInvalidAddr(t *testing.T) {
	if reason, blocked := (ssrf.Policy{}).Blocked(netip.Addr{}); !blocked || reason != "invalid" {
		t.Errorf("Blocked(zero Addr) = %q, %v; want invalid, true", reason, blocked)
	}
}

func TestBlockedAllowedCIDRs(t *testing.T) {
	allowed, err := ssrf.ParseCIDRs("127.0.0.0/8, 10.1.0.0/16, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	p := ssrf.Policy{AllowedCIDRs: allowed}
	tests := []struct {
		addr    string
		blocked bool
	}{
		{"127.0.0.1", false},
		{"::ffff:127.0.0.1", false}, // unmapped before the allow-list check
		{"64:ff9b::127.0.0.1", false},
		{"10.1.2.3", false},
		{"10.2.0.1", true},
		{"fd00::1", false},
		{"fd00:ec2::254", false}, // the allow-list overrides every category
		{"::1", true},            // 127.0.0.0/8 does not cover IPv6 loopback
		{"169.254.169.254", true},
	}
	for _, tt := range tests {
		if _, blocked := p.Blocked(netip.MustParseAddr(tt.addr)); blocked != tt.blocked {
			t.Errorf("Blocked(%s) blocked = %v, want %v", tt.addr, blocked, tt.blocked)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string // substring; "" = no error
	}{
		{in: "", want: nil},
		{in: " , ", want: nil},
		{in: "127.0.0.0/8", want: []string{"127.0.0.0/8"}},
		{in: "127.0.0.0/8, ::1", want: []string{"127.0.0.0/8", "::1/128"}},
		{in: "10.0.0.1,192.168.0.0/16,", want: []string{"10.0.0.1/32", "192.168.0.0/16"}},
		{in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},            // masked
		{in: "::ffff:127.0.0.0/104", want: []string{"127.0.0.0/8"}}, // unmapped
		{in: "127.0.0.0/8, 10.0.0.0/33", wantErr: `"10.0.0.0/33"`},  // names the entry
		{in: "localhost", wantErr: `"localhost"`},
		{in: "fe80::1%eth0", wantErr: `"fe80::1%eth0"`},
		{in: "1.2.3.4/8/8", wantErr: `"1.2.3.4/8/8"`},
	}
	for _, tt := range tests {
		got, err := ssrf.ParseCIDRs(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCIDRs(%q) error = %v, want one naming %s", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCIDRs(%q): %v", tt.in, err)
			continue
		}
		var gotS []string
		for _, p := range got {
			gotS = append(gotS, p.String())
		}
		if strings.Join(gotS, " ") != strings.Join(tt.want, " ") {
			t.Errorf("ParseCIDRs(%q) = %v, want %v", tt.in, gotS, tt.want)
		}
	}
}
