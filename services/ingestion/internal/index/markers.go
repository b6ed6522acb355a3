package index

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// Idempotency markers: what is left in Redis of an event once it moved to
// history, so they are packed (issue #12: ≤ 50 B of Redis per archived
// event, markers included).
//
// A marker lives in a small hash of its account and time bucket:
//
//		wh:{a:<acct>}:idemb:<bucket>:<level>:<sub>   field -> value
//
//	  - bucket = claim time (ms) / IDEMPOTENCY_WINDOW: a claim at t can meet
//	    markers of [t-window, t] only in its own bucket and the one before,
//	    so a claim reads those two. Every hash of a bucket expires at the
//	    bucket's end + the window (the last claim in it has then aged out).
//	  - field = the first 10 bytes of sha256(key). Two distinct keys of one
//	    account collide only if those 80 bits agree: with n keys claimed per
//	    account within a window (two buckets), p ≈ n²/2⁸¹, i.e. 4·10⁻⁹ at
//	    n = 10⁸ (1,157 keys/s of one account all day). A collision would
//	    answer the second key with the first key's event.
//	  - value = the event id's 128 bits (16 bytes; an id that is not a
//	    valid event id is kept as its text) + the claim time, 6 bytes of
//	    big-endian ms. The claim time makes the window exact: a marker older
//	    than the window is not honoured though its hash has not expired yet.
//	  - level and sub keep every hash small enough for Redis' listpack
//	    encoding (hash-max-listpack-entries, 128 by default; fields and
//	    values are far below hash-max-listpack-value, 64): level 0 is one
//	    hash; level l has 4^l hashes, sub = the top 2l bits of bytes 10–11
//	    of the key's hash. A marker goes to the first level whose hash on
//	    its path holds fewer than markerCap entries, so hashes fill one level
//	    after another and each stays under the limit; a key is looked up
//	    in every hash of its path (one HLEN and one HGET each: cheap for a
//	    hash that does not exist). Eight levels hold 2.8 million markers
//	    per account and window listpack-encoded; past that the last level's
//	    hashes grow into Redis' hashtable encoding (correct, larger).
//
// About 30 B per marker in the listpack (12 for the field, 18 for the
// value, with their headers; 6 more for a producer-chosen id), plus the
// hash's own overhead shared by up to 128 markers: ≈ 35 B per marker
// measured (TestMarkersStayListpackEncodedAndSmall).
//
// Every key of a claim carries the account's hash tag, so the one script
// that checks and writes runs on Redis Cluster; it also reads the
// previous build's marker (IdemKey), so an upgrade does not duplicate
// events. It is create-only: of any number of concurrent claims of one
// key, one takes it and the others get its event.
const (
	markerLevels    = 8
	markerCap       = 128 // Redis' default hash-max-listpack-entries
	markerFieldLen  = 10
	markerTimeBytes = 6
)

// markerKeyPrefix is the prefix of an account's marker hashes. It is not
// "…:idem:", under which the previous build kept any producer key.
func markerKeyPrefix(accountID string) string { return "wh:{a:" + accountID + "}:idemb:" }

// markerPath returns the field of key and the keys of its hashes in the
// bucket, level 0 first.
func markerPath(accountID, key string, bucket int64) (field string, keys []string) {
	h := sha256.Sum256([]byte(key))
	path := binary.BigEndian.Uint16(h[markerFieldLen:])
	prefix := markerKeyPrefix(accountID) + strconv.FormatInt(bucket, 10) + ":"
	keys = make([]string, markerLevels)
	for l := 0; l < markerLevels; l++ {
		sub := 0
		if l > 0 {
			sub = int(path >> (16 - 2*l))
		}
		keys[l] = prefix + strconv.Itoa(l) + ":" + strconv.Itoa(sub)
	}
	return string(h[:markerFieldLen]), keys
}

// markerValue packs an event id and the claim time: the id's 16 bytes,
// whose first 6 are the id's time, which is the claim time for the ids
// ingestion makes (ids.New at the publish's clock); other ids (chosen by
// the producer) carry the claim time in 6 more bytes.
func markerValue(eventID string, at time.Time) (string, error) {
	raw, ok := ids.Bytes(ids.Event, eventID)
	if !ok {
		return "", fmt.Errorf("idempotency claim for %q: not an event id", eventID)
	}
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(at.UnixMilli()))
	if string(raw[:markerTimeBytes]) == string(ms[8-markerTimeBytes:]) {
		return string(raw[:]), nil
	}
	return string(append(raw[:], ms[8-markerTimeBytes:]...)), nil
}

// markerEventID unpacks the event id of a marker's value.
func markerEventID(v string) (string, error) {
	if len(v) != 16 && len(v) != 16+markerTimeBytes {
		return "", fmt.Errorf("idempotency marker of %d bytes, want 16 or %d", len(v), 16+markerTimeBytes)
	}
	var raw [16]byte
	copy(raw[:], v)
	return ids.FromBytes(ids.Event, raw), nil
}

// markerScript checks a key's markers and, when none holds it, claims it.
//
//	KEYS: 1..L the key's path in the claim's bucket, L+1..2L in the bucket
//	      before, 2L+1 the previous build's marker
//	ARGV: 1 field, 2 value, 3 claim time (ms), 4 window (ms), 5 expiry of
//	      the claim's bucket (ms from the claim time), 6 hash capacity,
//	      7 "1" to claim ("0": look only)
//
// Returns {0} when it claimed the key (or, looking only, found nothing),
// {1, value} for a marker within the window, {2, event id} for a marker
// of the previous build.
var markerScript = redis.NewScript(`
local L = (#KEYS - 1) / 2
local now, window, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
local function fresh(v)
  local t, from = 0, 1 -- the claim time: the id's first 6 bytes, or the last 6
  if #v > 16 then from = 17 end
  for j = from, from + 5 do t = t * 256 + string.byte(v, j) end
  return now - t < window
end
local free
for i = 1, 2 * L do
  local cur = i <= L
  local n = redis.call('HLEN', KEYS[i])
  if n == 0 then
    if cur and not free then free = i end
  else
    local v = redis.call('HGET', KEYS[i], ARGV[1])
    if v and fresh(v) then return {1, v} end
    if cur and not free and n < cap then free = i end
  end
end
local old = redis.call('GET', KEYS[#KEYS])
if old then return {2, old} end
if ARGV[7] ~= '1' then return {0} end
free = free or L
redis.call('HSET', KEYS[free], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[free], ARGV[5])
return {0}
`)

// markerReply is what the script answered for one claim.
type markerReply struct {
	found   bool
	eventID string
}

// runMarkers runs the marker script for each claim (claim set: take free
// keys; else only look), in one pipeline.
func (x *Redis) runMarkers(ctx context.Context, claims []ingest.Claim, claim bool) ([]markerReply, error) {
	w := x.window.Milliseconds()
	if w <= 0 {
		return nil, fmt.Errorf("idempotency window %v is not positive", x.window)
	}
	calls := make([]redisx.ScriptCall, len(claims))
	for i, c := range claims {
		at := c.At
		if at.IsZero() {
			at = time.Now()
		}
		ms := at.UnixMilli()
		bucket := ms / w
		field, cur := markerPath(c.AccountID, c.Key, bucket)
		_, prev := markerPath(c.AccountID, c.Key, bucket-1)
		keys := append(append(cur, prev...), IdemKey(c.AccountID, c.Key))
		expire := (bucket+1)*w + w - ms // the bucket's end + the window
		flag := "0"
		if claim {
			flag = "1"
		}
		value := ""
		if claim {
			v, err := markerValue(c.EventID, at)
			if err != nil {
				return nil, err
			}
			value = v
		}
		calls[i] = redisx.ScriptCall{Script: markerScript, Keys: keys,
			Args: []any{field, value, ms, w, expire, markerCap, flag}}
	}
	res, errs := redisx.RunScripts(ctx, x.rdb, calls, nil)
	if err := redisx.FirstError(errs); err != nil {
		return nil, err
	}
	out := make([]markerReply, len(claims))
	for i, v := range res {
		r, err := parseMarkerReply(v)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

func parseMarkerReply(v any) (markerReply, error) {
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return markerReply{}, fmt.Errorf("idempotency claim: unexpected reply %v", v)
	}
	kind, _ := a[0].(int64)
	if kind == 0 {
		return markerReply{}, nil
	}
	if len(a) < 2 {
		return markerReply{}, fmt.Errorf("idempotency claim: unexpected reply %v", v)
	}
	s, _ := a[1].(string)
	if kind == 2 {
		return markerReply{found: true, eventID: s}, nil
	}
	id, err := markerEventID(s)
	if err != nil {
		return markerReply{}, err
	}
	return markerReply{found: true, eventID: id}, nil
}
