// Package ids makes the identifiers of the suite: a prefix and a 26-character
// time-ordered value (48-bit millisecond time + 80 random bits, Crockford
// base32, as in ULID), so that ids sort by creation time.
package ids

import (
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"time"
)

// Prefixes of the ids the suite issues.
const (
	Event    = "evt_"
	Endpoint = "ep_"
	Account  = "acct_"
	Delivery = "dlv_"
	APIKey   = "vsk_"
	// APIKeyID prefixes the id of an API key (authn.KeyID): what lists and
	// logs name a key by, never the key itself.
	APIKeyID = "key_"
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// New returns prefix + a time-ordered id created at t.
func New(prefix string, t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:])
	return prefix + encode(b)
}

// Derive returns prefix + an id whose first 10 characters (the time part)
// are copied from parent's and whose rest is a hash of the parts, so the
// same inputs always give the same id (an upsert key) and the result still
// sorts by the parent's time.
func Derive(prefix, parent string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(parent))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	var b [16]byte
	copy(b[:], h.Sum(nil))
	s := encode(b)
	if t := timePart(parent); t != "" {
		s = t + s[10:]
	}
	return prefix + s
}

// Time returns the creation time encoded in a time-ordered id.
func Time(id string) (time.Time, bool) {
	t := timePart(id)
	if t == "" {
		return time.Time{}, false
	}
	var ms uint64
	for _, c := range t {
		i := strings.IndexRune(alphabet, c)
		if i < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(i)
	}
	return time.UnixMilli(int64(ms)).UTC(), true
}

// Valid reports whether id is prefix followed by 26 base32 characters.
func Valid(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) != 26 {
		return false
	}
	for _, c := range rest {
		if !strings.ContainsRune(alphabet, c) {
			return false
		}
	}
	return rest[0] <= '7' // 128 bits fit in 26 characters only so
}

func timePart(id string) string {
	i := strings.IndexByte(id, '_')
	rest := id[i+1:]
	if len(rest) != 26 {
		return ""
	}
	return rest[:10]
}

// encode writes 128 bits as 26 Crockford base32 characters, most
// significant first (the first character carries 3 bits).
func encode(b [16]byte) string {
	var out [26]byte
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[i+8])
	}
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// Bytes returns the 128 bits of a valid id of this prefix (the inverse
// of FromBytes), for compact storage.
func Bytes(prefix, id string) ([16]byte, bool) {
	var b [16]byte
	if !Valid(prefix, id) {
		return b, false
	}
	var hi, lo uint64
	for _, c := range id[len(prefix):] {
		v := uint64(strings.IndexRune(alphabet, c))
		hi = hi<<5 | lo>>59
		lo = lo<<5 | v
	}
	for i := 7; i >= 0; i-- {
		b[i], b[i+8] = byte(hi), byte(lo)
		hi >>= 8
		lo >>= 8
	}
	return b, true
}

// FromBytes returns prefix + the id of 128 bits (the inverse of Bytes).
func FromBytes(prefix string, b [16]byte) string { return prefix + encode(b) }
