package secretbox_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/voxscriber/webhooks/pkg/secretbox"
)

func newBox(t *testing.T, fill byte) *secretbox.Box {
	t.Helper()
	b, err := secretbox.New(bytes.Repeat([]byte{fill}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	b := newBox(t, 1)
	for _, plain := range []string{
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"",
		"ünïcødé ✓",
		strings.Repeat("x", 10000),
	} {
		sealed := b.Seal(plain, "ep_123")
		if !strings.HasPrefix(sealed, "v1:") {
			t.Fatalf("sealed %q lacks the v1: prefix", sealed)
		}
		if plain != "" && strings.Contains(sealed, plain) {
			t.Fatalf("sealed value contains the plaintext")
		}
		got, err := b.Open(sealed, "ep_123")
		if err != nil || got != plain {
			t.Fatalf("Open(Seal(%.20q)) = %.20q, %v", plain, got, err)
		}
	}
}

func TestDistinctNonces(t *testing.T) {
	b := newBox(t, 1)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		sealed := b.Seal("same secret", "ep_1")
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sealed, "v1:"))
		if err != nil {
			t.Fatal(err)
		}
		nonce := string(raw[:12])
		if seen[nonce] {
			t.Fatalf("nonce repeated after %d seals", i)
		}
		seen[nonce] = true
	}
}

func TestOpenFailures(t *testing.T) {
	b := newBox(t, 1)
	sealed := b.Seal("whsec_secret", "ep_1")
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sealed, "v1:"))

	flip := func(i int) string {
		c := bytes.Clone(raw)
		c[i] ^= 0x01
		return "v1:" + base64.StdEncoding.EncodeToString(c)
	}

	tests := []struct {
		name   string
		box    *secretbox.Box
		sealed string
		aad    string
		want   error
	}{
		{"wrong key", newBox(t, 2), sealed, "ep_1", secretbox.ErrDecrypt},
		{"wrong aad", b, sealed, "ep_2", secretbox.ErrDecrypt},
		{"empty aad", b, sealed, "", secretbox.ErrDecrypt},
		{"tampered nonce", b, flip(0), "ep_1", secretbox.ErrDecrypt},
		{"tampered ciphertext", b, flip(12), "ep_1", secretbox.ErrDecrypt},
		{"tampered tag", b, flip(len(raw) - 1), "ep_1", secretbox.ErrDecrypt},
		{"truncated", b, "v1:" + base64.StdEncoding.EncodeToString(raw[:len(raw)-1]), "ep_1", secretbox.ErrDecrypt},
		{"too short", b, "v1:" + base64.StdEncoding.EncodeToString(raw[:27]), "ep_1", secretbox.ErrFormat},
		{"no prefix", b, strings.TrimPrefix(sealed, "v1:"), "ep_1", secretbox.ErrFormat},
		{"other version", b, "v2:" + strings.TrimPrefix(sealed, "v1:"), "ep_1", secretbox.ErrFormat},
		{"bad base64", b, "v1:@@@", "ep_1", secretbox.ErrFormat},
		{"plaintext", b, "whsec_secret", "ep_1", secretbox.ErrFormat},
		{"empty", b, "", "ep_1", secretbox.ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.box.Open(tt.sealed, tt.aad)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %q, %v; want error %v", got, err, tt.want)
			}
			if got != "" {
				t.Fatalf("Open returned %q alongside an error", got)
			}
		})
	}
}

func TestNewKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := secretbox.New(make([]byte, n)); err == nil || !strings.Contains(err.Error(), "32 bytes") {
			t.Errorf("New(%d-byte key) error = %v; want a 32-byte requirement", n, err)
		}
	}
}

func TestFromBase64(t *testing.T) {
	key := bytes.Repeat([]byte{0xfb}, 32) // 0xfb… uses the +/ vs -_ alphabet difference
	ref, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed := ref.Seal("whsec_x", "ep_1")

	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		s := enc.EncodeToString(key)
		b, err := secretbox.FromBase64(" " + s + "\n")
		if err != nil {
			t.Fatalf("FromBase64(%q): %v", s, err)
		}
		if got, err := b.Open(sealed, "ep_1"); err != nil || got != "whsec_x" {
			t.Fatalf("box from %q opens to %q, %v", s, got, err)
		}
	}

	bad := []struct{ in, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"not base64!!", "not valid base64"},
		{base64.StdEncoding.EncodeToString(make([]byte, 16)), "decodes to 16 bytes"},
		{base64.StdEncoding.EncodeToString(make([]byte, 33)), "decodes to 33 bytes"},
	}
	for _, tt := range bad {
		_, err := secretbox.FromBase64(tt.in)
		if err == nil || !strings.Contains(err.Error(), "SECRETS_KEY") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("FromBase64(%q) error = %v; want one naming SECRETS_KEY and %q", tt.in, err, tt.want)
		}
		if err != nil && tt.in != "" && strings.TrimSpace(tt.in) != "" && strings.Contains(err.Error(), tt.in) {
			t.Errorf("error %q echoes the key material", err)
		}
	}
}
