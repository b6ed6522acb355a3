package ssrf_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// fakeResolver answers from a fixed table; unknown names are "no such host".
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	answers, ok := f[strings.TrimSuffix(strings.ToLower(host), ".")]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(answers))
	for i, s := range answers {
		out[i] = netip.MustParseAddr(s)
	}
	return out, nil
}

// switchResolver answers every name with its current address, which a test
// can change between calls (a DNS rebinding attacker).
type switchResolver struct {
	mu   sync.Mutex
	addr netip.Addr
	hits int
}

func (s *switchResolver) set(a string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addr = netip.MustParseAddr(a)
}

func (s *switchResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits++
	return []netip.Addr{s.addr}, nil
}
