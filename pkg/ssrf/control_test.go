package ssrf

import (
	"errors"
	"testing"
)

// TestCheckRemote exercises the Control-hook check directly: it is the last
// line of defence should a blocked address ever reach connect(2).
func TestCheckRemote(t *testing.T) {
	var p Policy
	tests := []struct {
		address string
		kind    string // "" = allowed
	}{
		{"93.184.216.34:443", ""},
		{"[2606:4700::1]:443", ""},
		{"127.0.0.1:80", KindBlocked},
		{"[::ffff:10.0.0.1]:443", KindBlocked},
		{"[fe80::1%eth0]:443", KindBlocked},
		{"not-an-ip:443", KindBlocked},
	}
	for _, tt := range tests {
		err := p.checkRemote(tt.address)
		if tt.kind == "" {
			if err != nil {
				t.Errorf("checkRemote(%s): %v", tt.address, err)
			}
			continue
		}
		var se *Error
		if !errors.As(err, &se) || se.Kind != tt.kind {
			t.Errorf("checkRemote(%s) = %v; want kind %s", tt.address, err, tt.kind)
		}
	}
}
