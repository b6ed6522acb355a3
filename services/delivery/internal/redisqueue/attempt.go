package redisqueue

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// An attempt log entry (wh:att:… lists) is the JSON object attemptJSON
// describes, as encoding/json writes it: every build of this service has
// written that, and every build reads it. This file writes and reads it
// without reflection, because the delivery path does it once per attempt
// and the archiver once per attempt it moves (together about a tenth of
// the delivery process's CPU with encoding/json). The writer's output is
// byte for byte encoding/json's; the reader takes the compact form the
// writer makes and hands anything else (whitespace, other key spellings,
// surrogate escapes, numbers that are not plain integers, repeated keys)
// to encoding/json, so it accepts exactly what encoding/json accepts and
// reads it the same way (FuzzAttemptCodec).

// attemptJSON is an attempt log entry.
type attemptJSON struct {
	Number     int               `json:"number"`
	Start      int64             `json:"start"`
	StatusCode int               `json:"status,omitempty"`
	LatencyMS  int64             `json:"latency_ms"`
	ErrorType  string            `json:"error_type,omitempty"`
	Error      string            `json:"error,omitempty"`
	Response   string            `json:"response,omitempty"`
	Headers    map[string]string `json:"request_headers,omitempty"`
	TraceID    string            `json:"trace_id,omitempty"`
	SpanID     string            `json:"span_id,omitempty"`
	URL        string            `json:"url"`
}

func toAttemptJSON(a *delivery.Attempt) attemptJSON {
	resp := a.Response
	if len(resp) > delivery.MaxResponseBytes {
		resp = strings.ToValidUTF8(resp[:delivery.MaxResponseBytes], "\uFFFD")
	}
	return attemptJSON{
		Number: a.Number, Start: ms(a.Start), StatusCode: a.StatusCode, LatencyMS: a.Latency.Milliseconds(),
		ErrorType: string(a.ErrorType), Error: a.Error, Response: resp, Headers: a.RequestHeaders,
		TraceID: a.TraceID, SpanID: a.SpanID, URL: a.URL,
	}
}

func (j *attemptJSON) attempt() delivery.Attempt {
	return delivery.Attempt{
		Number: j.Number, Start: time.UnixMilli(j.Start).UTC(), StatusCode: j.StatusCode,
		Latency: time.Duration(j.LatencyMS) * time.Millisecond, ErrorType: delivery.ErrorType(j.ErrorType),
		Error: j.Error, Response: j.Response, RequestHeaders: j.Headers, TraceID: j.TraceID,
		SpanID: j.SpanID, URL: j.URL,
	}
}

// encodeAttempt is json.Marshal of the attempt's attemptJSON.
func encodeAttempt(a *delivery.Attempt) []byte {
	j := toAttemptJSON(a)
	n := 160 + len(j.ErrorType) + len(j.Error) + len(j.Response) + len(j.TraceID) + len(j.SpanID) + len(j.URL)
	for k, v := range j.Headers {
		n += len(k) + len(v) + 6
	}
	b := make([]byte, 0, n)
	b = append(b, `{"number":`...)
	b = strconv.AppendInt(b, int64(j.Number), 10)
	b = append(b, `,"start":`...)
	b = strconv.AppendInt(b, j.Start, 10)
	if j.StatusCode != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(j.StatusCode), 10)
	}
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendInt(b, j.LatencyMS, 10)
	b = appendField(b, "error_type", j.ErrorType)
	b = appendField(b, "error", j.Error)
	b = appendField(b, "response", j.Response)
	if len(j.Headers) > 0 {
		b = append(b, `,"request_headers":{`...)
		keys := make([]string, 0, len(j.Headers))
		for k := range j.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, j.Headers[k])
		}
		b = append(b, '}')
	}
	b = appendField(b, "trace_id", j.TraceID)
	b = appendField(b, "span_id", j.SpanID)
	b = append(b, `,"url":`...)
	b = appendString(b, j.URL)
	return append(b, '}')
}

// appendField appends ,"name":"v" unless v is empty (omitempty).
func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

const hexDigits = "0123456789abcdef"

// plain holds the ASCII bytes appendString copies as they are.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString appends s as encoding/json quotes it: HTML-safe (<, > and &
// escaped), invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// decodeAttempt reads an attempt log entry.
func decodeAttempt(s string) (delivery.Attempt, error) {
	if j, ok := parseAttempt(s); ok {
		return j.attempt(), nil
	}
	var j attemptJSON
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return delivery.Attempt{}, err
	}
	return j.attempt(), nil
}

// errSlow sends an entry the fast reader does not take to encoding/json.
var errSlow = errors.New("not in the compact form")

// parseAttempt reads the compact form encodeAttempt writes; ok is false
// for anything else.
func parseAttempt(s string) (j attemptJSON, ok bool) {
	p := scanner{s: s}
	if !p.take('{') {
		return j, false
	}
	var seen uint16
	for first := true; ; first = false {
		if p.take('}') {
			break
		}
		if !first && !p.take(',') {
			return j, false
		}
		key := p.str()
		if !p.take(':') {
			return j, false
		}
		bit := attemptKeys[key]
		if bit == 0 || seen&bit != 0 {
			return j, false // not ours exactly, or repeated
		}
		seen |= bit
		switch key {
		case "number":
			j.Number = int(p.integer())
		case "start":
			j.Start = p.integer()
		case "status":
			j.StatusCode = int(p.integer())
		case "latency_ms":
			j.LatencyMS = p.integer()
		case "error_type":
			j.ErrorType = p.str()
		case "error":
			j.Error = p.str()
		case "response":
			j.Response = p.str()
		case "request_headers":
			j.Headers = p.object()
		case "trace_id":
			j.TraceID = p.str()
		case "span_id":
			j.SpanID = p.str()
		case "url":
			j.URL = p.str()
		}
		if p.err != nil {
			return j, false
		}
	}
	return j, p.err == nil && p.i == len(s)
}

// attemptKeys gives each key of attemptJSON a bit, to tell a repeated key.
var attemptKeys = map[string]uint16{
	"number": 1 << 0, "start": 1 << 1, "status": 1 << 2, "latency_ms": 1 << 3, "error_type": 1 << 4,
	"error": 1 << 5, "response": 1 << 6, "request_headers": 1 << 7, "trace_id": 1 << 8, "span_id": 1 << 9,
	"url": 1 << 10,
}

// scanner reads compact JSON (no whitespace) from s; the first thing it
// does not take sets err, and every later call returns zero values.
type scanner struct {
	s   string
	i   int
	err error
}

func (p *scanner) take(c byte) bool {
	if p.err == nil && p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// integer reads -?(0|[1-9][0-9]*) that fits an int64.
func (p *scanner) integer() int64 {
	if p.err != nil {
		return 0
	}
	start := p.i
	if p.i < len(p.s) && p.s[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || (p.s[digits] == '0' && p.i > digits+1) {
		p.err = errSlow
		return 0
	}
	if p.i < len(p.s) && (p.s[p.i] == '.' || p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.err = errSlow
		return 0
	}
	v, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
	if err != nil {
		p.err = errSlow
	}
	return v
}

// str reads a string: valid UTF-8, no control characters, and of the
// escapes only those encoding/json writes outside surrogate pairs.
func (p *scanner) str() string {
	if !p.take('"') {
		p.err = errSlow
		return ""
	}
	start := p.i
	ascii := true
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			if !ascii && !utf8.ValidString(v) {
				p.err = errSlow
				return ""
			}
			return v
		case c == '\\':
			return p.escaped(start)
		case c < 0x20:
			p.err = errSlow
			return ""
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	p.err = errSlow
	return ""
}

// escaped reads the rest of a string that has an escape at p.i, from its
// start.
func (p *scanner) escaped(start int) string {
	var b strings.Builder
	b.Grow(p.i - start + 16)
	from := start
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			b.WriteString(p.s[from:p.i])
			p.i++
			v := b.String()
			if !utf8.ValidString(v) {
				p.err = errSlow
				return ""
			}
			return v
		case c < 0x20:
			p.err = errSlow
			return ""
		case c != '\\':
			p.i++
			continue
		}
		b.WriteString(p.s[from:p.i])
		if p.i+1 >= len(p.s) {
			break
		}
		switch e := p.s[p.i+1]; e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if p.i+6 > len(p.s) {
				p.err = errSlow
				return ""
			}
			r, err := strconv.ParseUint(p.s[p.i+2:p.i+6], 16, 32)
			if err != nil || (r >= 0xD800 && r <= 0xDFFF) {
				p.err = errSlow // surrogates: encoding/json's pairing rules
				return ""
			}
			b.WriteRune(rune(r))
			p.i += 4
		default:
			p.err = errSlow
			return ""
		}
		p.i += 2
		from = p.i
	}
	p.err = errSlow
	return ""
}

// object reads an object of strings without a repeated key.
func (p *scanner) object() map[string]string {
	if !p.take('{') {
		p.err = errSlow
		return nil
	}
	m := map[string]string{}
	for first := true; ; first = false {
		if p.take('}') {
			break
		}
		if !first && !p.take(',') {
			p.err = errSlow
			return nil
		}
		k := p.str()
		if !p.take(':') {
			p.err = errSlow
			return nil
		}
		v := p.str()
		if _, dup := m[k]; dup || p.err != nil {
			p.err = errSlow
			return nil
		}
		m[k] = v
	}
	return m
}
