package history

import (
	"encoding/hex"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/voxscriber/webhooks/pkg/ids"
)

// Status is where a delivery stands. The values are the delivery service's
// (delivery.Status): history holds ended deliveries (succeeded, failed,
// canceled) and parked ones.
type Status string

// Statuses kept in history.
const (
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCanceled  Status = "canceled"
	StatusParked    Status = "parked"
)

// Event is an event record: eventstore.Event without its live-only state.
type Event struct {
	ID             string
	AccountID      string
	Type           string
	Payload        []byte // the exact JSON body receivers get; stored once per event
	CreateTime     time.Time
	IdempotencyKey string
	UploadID       string
	TraceID        string // 32 hex digits (W3C trace id)
	DeliveryCount  int
}

// Delivery is a delivery record (delivery.Delivery without the schedule's
// state). EventType and UploadID repeat the event's so that every list
// filter is served by an index of this table alone (the event may still be
// live in Redis while its delivery is in history).
type Delivery struct {
	ID         string
	EventID    string
	EndpointID string
	AccountID  string
	EventType  string
	UploadID   string
	// OrderingKey is set for a delivery to an endpoint ordered by key.
	OrderingKey string
	// LineSeq is, for an ordered delivery parked in history, its sequence
	// number in its key's line (0 otherwise): restored, it rejoins the
	// line at that place.
	LineSeq int64
	Status  Status
	// Version orders the states of one delivery over its whole life: it
	// grows with every change, including after a round trip through
	// history (a record restored to Redis continues from its stored
	// Version). Archive never lets a lower version overwrite a higher one.
	Version      int64
	Attempts     int
	Base         int
	FirstAttempt time.Time
	CreateTime   time.Time
	// UpdateTime is when the delivery last changed: when it ended, or for
	// a parked delivery when it was parked (PARKED_RETENTION counts from
	// it).
	UpdateTime  time.Time
	TraceParent string
	TraceState  string
	LastCode    int
	LastError   string
	Test        bool
	Body        []byte // test deliveries only
}

// Attempt is one HTTP request of a delivery (delivery.Attempt).
type Attempt struct {
	Number     int
	Start      time.Time
	StatusCode int
	Latency    time.Duration
	ErrorType  string
	Error      string
	// Response is the excerpt of the response body; Archive keeps at most
	// MaxResponseBytes.
	Response string
	// RequestHeaders are the headers sent; Archive keeps those a customer
	// debugs with (see DerivedHeaders).
	RequestHeaders map[string]string
	TraceID        string // 32 hex digits
	SpanID         string // 16 hex digits
	URL            string
}

// Succeeded reports whether the attempt got a 2xx answer.
func (a *Attempt) Succeeded() bool { return a.ErrorType == "" && a.StatusCode/100 == 2 }

// MaxResponseBytes bounds the response excerpt kept per attempt.
const MaxResponseBytes = 4 << 10

// DerivedHeaders are request headers Archive does not store: each is the
// same for every attempt or follows from what the records hold (attempt
// number, trace and span ids); X-Webhook-Event and X-Webhook-Id are dropped
// too when they hold the event's type or the delivery's or event's id.
// Reads do not bring them back.
var DerivedHeaders = []string{"Content-Type", "Content-Length", "User-Agent", "Traceparent", "Tracestate", "X-Webhook-Attempt", "Accept-Encoding"}

// DeliveryRecord is a delivery with the attempts to archive with it (all
// of them, or only those not archived before: attempts are keyed by number
// and never rewritten).
type DeliveryRecord struct {
	Delivery
	Attempts []Attempt
}

// Page limits.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Cursor is a position in a listing: the id of the last record returned
// (empty: from the start). It is opaque to API clients; to the merged read
// path it is an id, so one cursor continues the listings of both tiers (see
// the package doc).
type Cursor string

// CursorAt returns the cursor just past the record with this id.
func CursorAt(id string) Cursor { return Cursor(id) }

// ID returns the id the cursor points past.
func (c Cursor) ID() string { return string(c) }

// Prefixes of the ids stored (pkg/ids).
const (
	prefixEvent    = ids.Event
	prefixDelivery = ids.Delivery
	prefixEndpoint = ids.Endpoint
	prefixAccount  = ids.Account
)

// id codec: prefix + 26 Crockford base32 characters (128 bits) <-> uuid
// (pkg/ids).

func idBytes(prefix, id string) ([16]byte, bool) { return ids.Bytes(prefix, id) }
func idString(prefix string, b [16]byte) string  { return ids.FromBytes(prefix, b) }

// idTime is the time part of an id (its first 48 bits, ms since the epoch).
func idTime(b [16]byte) time.Time {
	var ms int64
	for i := 0; i < 6; i++ {
		ms = ms<<8 | int64(b[i])
	}
	return time.UnixMilli(ms).UTC()
}

// key is a record's primary key: (t, id).
type key struct {
	t  time.Time
	id [16]byte
}

func parseKey(prefix, id string) (key, bool) {
	b, ok := idBytes(prefix, id)
	if !ok {
		return key{}, false
	}
	return key{t: idTime(b), id: b}, true
}

// traceBytes decodes a 32-hex-digit trace id; nil when absent or invalid.
func traceBytes(s string) any {
	if len(s) != 32 {
		return nil
	}
	var b [16]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil || b == ([16]byte{}) {
		return nil
	}
	return b
}

func traceString(b *[16]byte) string {
	if b == nil {
		return ""
	}
	return hex.EncodeToString(b[:])
}

// spanInt decodes a 16-hex-digit span id into a bigint; nil when invalid.
func spanInt(s string) any {
	if len(s) != 16 {
		return nil
	}
	u, err := strconv.ParseUint(s, 16, 64)
	if err != nil || u == 0 {
		return nil
	}
	return int64(u)
}

func spanString(v *int64) string {
	if v == nil {
		return ""
	}
	s := strconv.FormatUint(uint64(*v), 16)
	return strings.Repeat("0", 16-len(s)) + s
}

// keptHeaders returns "Name: value" for the headers worth storing, sorted.
func keptHeaders(h map[string]string, d *Delivery) []string {
	h = KeptHeaders(h, d.EventType, d.ID, d.EventID)
	if len(h) == 0 {
		return nil
	}
	out := make([]string, 0, len(h))
	for k, v := range h {
		out = append(out, k+": "+v)
	}
	sort.Strings(out)
	return out
}

// KeptHeaders returns the request headers of an attempt of delivery
// deliveryID (event eventID, of type eventType) worth storing: h without
// DerivedHeaders, nor X-Webhook-Event and X-Webhook-Id when they hold the
// event's type or the delivery's or event's id. The live tier stores the
// same set (services/delivery's redisqueue), so an attempt reads the same
// before and after it moves here. h itself when it keeps everything.
func KeptHeaders(h map[string]string, eventType, deliveryID, eventID string) map[string]string {
	drop := func(k, v string) bool {
		return derivedHeader(k) ||
			strings.EqualFold(k, "X-Webhook-Event") && v == eventType ||
			strings.EqualFold(k, "X-Webhook-Id") && (v == deliveryID || v == eventID)
	}
	n := 0
	for k, v := range h {
		if drop(k, v) {
			n++
		}
	}
	if n == 0 {
		return h
	}
	out := make(map[string]string, len(h)-n)
	for k, v := range h {
		if !drop(k, v) {
			out[k] = v
		}
	}
	return out
}

func derivedHeader(k string) bool {
	for _, d := range DerivedHeaders {
		if strings.EqualFold(k, d) {
			return true
		}
	}
	return false
}

func headersMap(hs []string) map[string]string {
	if len(hs) == 0 {
		return nil
	}
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		k, v, _ := strings.Cut(h, ": ")
		m[k] = v
	}
	return m
}

// truncateUTF8 cuts s to at most n bytes on a rune boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func jsonOf(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullInt(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
