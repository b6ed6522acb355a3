package events

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// TimestampLayout is the format of an envelope's "timestamp": RFC 3339 with
// exactly three fractional digits. Envelope always formats in UTC ("Z").
const TimestampLayout = "2006-01-02T15:04:05.000Z07:00"

// Envelope returns the exact request body receivers get for an event:
// compact JSON with the keys in this order
//
//	{"id":…,"type":…,"timestamp":…,"data":{…}}
//
// followed by "test":true as the last key when test is set. The data keys
// follow the catalogue's field order; absent optional fields are omitted. Strings are escaped like encoding/json
// does, except that <, > and & are kept literally; numbers print as described
// at formatNumber. The body is deterministic, so it is byte-identical however
// often it is rebuilt.
//
// The data must pass Validate; its error is returned otherwise. An empty id
// is reported as a *ValidationError for field "id".
func Envelope(id, eventType string, ts time.Time, data map[string]any, test bool) ([]byte, error) {
	if id == "" {
		return nil, invalid("id", "is required")
	}
	if err := Validate(eventType, data); err != nil {
		return nil, err
	}
	t := byName[eventType]

	e := newEncoder()
	e.raw(`{"id":`)
	e.string(id)
	e.raw(`,"type":`)
	e.string(eventType)
	e.raw(`,"timestamp":`)
	e.string(ts.UTC().Format(TimestampLayout))
	e.raw(`,"data":{`)
	first := true
	for _, f := range t.Fields {
		if _, ok := data[f.Name]; !ok {
			continue // an absent optional field
		}
		if !first {
			e.raw(",")
		}
		first = false
		e.string(f.Name)
		e.raw(":")
		e.value(data[f.Name])
	}
	e.raw("}")
	if test {
		e.raw(`,"test":true`)
	}
	e.raw("}")
	return e.buf.Bytes(), nil
}

// encoder writes compact JSON into a buffer.
type encoder struct {
	buf     bytes.Buffer
	strings *json.Encoder // writes into buf; used for strings only
}

func newEncoder() *encoder {
	e := &encoder{}
	e.strings = json.NewEncoder(&e.buf)
	e.strings.SetEscapeHTML(false)
	return e
}

// raw writes JSON punctuation or keys that need no escaping.
func (e *encoder) raw(s string) { e.buf.WriteString(s) }

// string writes s as a JSON string, escaped exactly as encoding/json does but
// without HTML escaping; invalid UTF-8 becomes U+FFFD.
func (e *encoder) string(s string) {
	_ = e.strings.Encode(s)         // encoding a string cannot fail
	e.buf.Truncate(e.buf.Len() - 1) // drop the newline Encode appends
}

// value writes a validated field value: a string or a finite number.
func (e *encoder) value(v any) {
	if s, ok := v.(string); ok {
		e.string(s)
		return
	}
	x, _ := number(v)
	e.raw(formatNumber(x))
}

// maxSafeInteger is 2^53: every integer of smaller magnitude is exactly
// representable as a float64 (and in JavaScript).
const maxSafeInteger = 1 << 53

// formatNumber renders x as in JSON: integral values below 2^53 in magnitude
// without decimal point or exponent ("3", never "3.0" or "1e+21"), any other
// value in the shortest form that reads back exactly, as
// strconv.FormatFloat(x, 'g', -1, 64) does ("12.5", "1e-07"). That is valid
// JSON for every finite x; NaN and infinities (rejected by Validate) render
// as "NaN", "+Inf" and "-Inf", for error messages only.
func formatNumber(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < maxSafeInteger {
		return strconv.FormatInt(int64(x), 10)
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}
