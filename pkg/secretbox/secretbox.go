// Package secretbox encrypts endpoint signing secrets at rest with
// AES-256-GCM.
//
// A sealed value is "v1:" followed by the standard base64 encoding of
// nonce (12 random bytes) || ciphertext || GCM tag. The additional
// authenticated data (aad) binds a ciphertext to its owner: the registry
// passes the endpoint id, so a sealed secret copied onto another endpoint
// fails to open. The version prefix leaves room for a future key-rotation
// format.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the required key length in bytes (AES-256).
const KeySize = 32

const (
	prefix    = "v1:"
	nonceSize = 12 // the standard GCM nonce size
)

var (
	// ErrFormat means the sealed value is not something Seal produced.
	ErrFormat = errors.New("secretbox: sealed value is malformed")
	// ErrDecrypt means authentication failed: the key is not the one used to
	// seal, the aad (owner) differs, or the data was altered.
	ErrDecrypt = errors.New("secretbox: cannot decrypt: wrong SECRETS_KEY, wrong owner, or the data was altered")
)

// Box seals and opens secrets with one key. It is safe for concurrent use.
// It holds no copy of the raw key.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	return &Box{aead: aead}, nil
}

// FromBase64 returns a Box for the SECRETS_KEY setting: the base64 encoding
// (standard or URL-safe alphabet, padded or not) of exactly 32 bytes, for
// example the output of `openssl rand -base64 32`. Surrounding white space
// is ignored. Errors name SECRETS_KEY and never echo the value.
func FromBase64(s string) (*Box, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("SECRETS_KEY is empty; set it to the base64 encoding of 32 random bytes (e.g. openssl rand -base64 32)")
	}
	key, ok := decodeBase64(s)
	if !ok {
		return nil, errors.New("SECRETS_KEY is not valid base64; set it to the base64 encoding of 32 random bytes (e.g. openssl rand -base64 32)")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("SECRETS_KEY decodes to %d bytes; it must be the base64 encoding of exactly %d bytes (e.g. openssl rand -base64 32)", len(key), KeySize)
	}
	return New(key)
}

// decodeBase64 accepts the standard and URL-safe alphabets, with or without
// padding.
func decodeBase64(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

// Seal encrypts plaintext bound to aad and returns "v1:" + base64(nonce ||
// ciphertext). Every call uses a fresh random nonce, so sealing the same
// plaintext twice gives different results.
func (b *Box) Seal(plaintext, aad string) string {
	buf := make([]byte, nonceSize, nonceSize+len(plaintext)+b.aead.Overhead())
	// crypto/rand.Read never fails; on a broken system it crashes the program.
	rand.Read(buf)
	buf = b.aead.Seal(buf, buf[:nonceSize], []byte(plaintext), []byte(aad))
	return prefix + base64.StdEncoding.EncodeToString(buf)
}

// Open decrypts a value produced by Seal with the same aad. It returns an
// error wrapping ErrFormat for malformed input and ErrDecrypt when the key,
// the aad or the data do not match.
func (b *Box) Open(sealed, aad string) (string, error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return "", fmt.Errorf("%w: missing %q prefix", ErrFormat, prefix)
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return "", fmt.Errorf("%w: invalid base64", ErrFormat)
	}
	if len(raw) < nonceSize+b.aead.Overhead() {
		return "", fmt.Errorf("%w: too short", ErrFormat)
	}
	plain, err := b.aead.Open(nil, raw[:nonceSize], raw[nonceSize:], []byte(aad))
	if err != nil {
		return "", ErrDecrypt
	}
	return string(plain), nil
}
