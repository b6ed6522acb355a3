// Package signing implements the two signature schemes carried by every
// VoxScriber webhook request, for the sender and for customers' Go receivers.
//
//   - X-Webhook-Signature: hex(HMAC-SHA256(key = the secret string's UTF-8
//     bytes, msg = raw body)). This is what the seed documentation's Express
//     and Flask examples verify.
//   - Standard Webhooks v1 (webhook-id, webhook-timestamp, webhook-signature):
//     "v1," + base64(HMAC-SHA256(key = base64-decoded part after "whsec_",
//     msg = id "." timestamp "." body)), several space-separated during a
//     secret rotation.
package signing

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// Header names.
const (
	HeaderSignature         = "X-Webhook-Signature"
	HeaderStdID             = "webhook-id"
	HeaderStdTimestamp      = "webhook-timestamp"
	HeaderStdSignature      = "webhook-signature"
	DefaultTolerance        = 5 * time.Minute
	minSecretBytes          = 24
	maxSecretBytes          = 64
	generatedSecretByteSize = 32
)

// Errors returned by Verify and ParseSecret.
var (
	ErrNoSignature      = errors.New("signing: no signature header")
	ErrMismatch         = errors.New("signing: no signature matches")
	ErrTimestampInvalid = errors.New("signing: webhook-timestamp is not a unix time")
	ErrTimestampSkew    = errors.New("signing: webhook-timestamp outside the tolerance")
)

// GenerateSecret returns "whsec_" + base64 of 32 random bytes.
func GenerateSecret() string {
	b := make([]byte, generatedSecretByteSize)
	_, _ = rand.Read(b) // never fails (crypto/rand contract since Go 1.24)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// ParseSecret checks a user-supplied secret: "whsec_" + base64 of 24 to 64
// bytes. It returns the decoded key bytes.
func ParseSecret(secret string) ([]byte, error) {
	rest, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("secret must start with %q", SecretPrefix)
	}
	key, err := decodeBase64(rest)
	if err != nil {
		return nil, fmt.Errorf("secret: the part after %q is not valid base64", SecretPrefix)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, fmt.Errorf("secret must encode %d to %d bytes, got %d", minSecretBytes, maxSecretBytes, len(key))
	}
	return key, nil
}

func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// standardKey is the HMAC key of the Standard Webhooks scheme: the decoded
// part after whsec_. A secret that does not decode is used as raw bytes, so
// signing never fails; ParseSecret rejects such secrets at registration.
func standardKey(secret string) []byte {
	rest := strings.TrimPrefix(secret, SecretPrefix)
	if key, err := decodeBase64(rest); err == nil {
		return key
	}
	return []byte(rest)
}

// SignHex returns hex(HMAC-SHA256(secret string, body)): X-Webhook-Signature.
func SignHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// SignStandard returns "v1," + base64 signature of id.timestamp.body.
func SignStandard(secret, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, standardKey(secret))
	var buf [20]byte
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(buf[:0], timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Headers returns the signature headers for one request. secrets are the
// endpoint's valid secrets, newest first: X-Webhook-Signature uses the
// newest, webhook-signature carries one signature per secret.
func Headers(secrets []string, id string, timestamp int64, body []byte) map[string]string {
	h := map[string]string{
		HeaderStdID:        id,
		HeaderStdTimestamp: strconv.FormatInt(timestamp, 10),
	}
	if len(secrets) == 0 {
		return h
	}
	h[HeaderSignature] = SignHex(secrets[0], body)
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = SignStandard(s, id, timestamp, body)
	}
	h[HeaderStdSignature] = strings.Join(sigs, " ")
	return h
}

// VerifyHex checks an X-Webhook-Signature value in constant time.
func VerifyHex(secret string, body []byte, signature string) error {
	if signature == "" {
		return ErrNoSignature
	}
	want := SignHex(secret, body)
	if !hmac.Equal([]byte(strings.ToLower(strings.TrimSpace(signature))), []byte(want)) {
		return ErrMismatch
	}
	return nil
}

// Verifier checks Standard Webhooks signatures.
type Verifier struct {
	// Secrets accepted, e.g. the old and new during a rotation.
	Secrets []string
	// Tolerance for webhook-timestamp against Now; DefaultTolerance when 0.
	Tolerance time.Duration
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// Verify checks webhook-id, webhook-timestamp and webhook-signature (a
// space-separated list of "v1,<base64>") against the raw body.
func (v Verifier) Verify(id, timestamp, signatures string, body []byte) error {
	if signatures == "" {
		return ErrNoSignature
	}
	ts, err := strconv.ParseInt(strings.TrimSpace(timestamp), 10, 64)
	if err != nil {
		return ErrTimestampInvalid
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	if d := now().Sub(time.Unix(ts, 0)); d > tol || d < -tol {
		return ErrTimestampSkew
	}
	for _, secret := range v.Secrets {
		want := SignStandard(secret, id, ts, body)
		for _, got := range strings.Fields(signatures) {
			if hmac.Equal([]byte(got), []byte(want)) {
				return nil
			}
		}
	}
	return ErrMismatch
}

// VerifyRequest checks the Standard Webhooks headers of an HTTP request
// whose body has already been read.
func (v Verifier) VerifyRequest(h http.Header, body []byte) error {
	return v.Verify(h.Get(HeaderStdID), h.Get(HeaderStdTimestamp), h.Get(HeaderStdSignature), body)
}
