package redisqueue

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// sampleAttempt is a failed attempt as the sender records one: the
// headers it sent, an HTML error page.
func sampleAttempt() delivery.Attempt {
	return delivery.Attempt{
		Number: 3, Start: time.UnixMilli(1764672000123).UTC(), StatusCode: 502, Latency: 87 * time.Millisecond,
		ErrorType: delivery.ErrorType("http_status"), Error: "receiver answered 502 Bad Gateway",
		Response: "<html><head><title>502 Bad Gateway</title></head>\r\n<body>\"upstream\" & co — naïve</body></html>\n",
		RequestHeaders: map[string]string{
			"Content-Type":      "application/json",
			"User-Agent":        "VoxScriber-Webhooks/1.0",
			"Webhook-Id":        "msg_01JD4Z6Q7V0000000000000000",
			"Webhook-Signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
			"Webhook-Timestamp": "1764672000",
			"traceparent":       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		},
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		URL: "https://hooks.example.com/voxscriber?x=1&y=<2>",
	}
}

// checkEncode fails unless encodeAttempt writes what json.Marshal writes
// and decodeAttempt reads it back as encoding/json does, by the fast
// reader.
func checkEncode(t *testing.T, a delivery.Attempt) {
	t.Helper()
	j := toAttemptJSON(&a)
	want, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	got := encodeAttempt(&a)
	if string(got) != string(want) {
		t.Fatalf("encodeAttempt:\n got %s\nwant %s", got, want)
	}
	var back attemptJSON
	if err := json.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	fast, ok := parseAttempt(string(got))
	if !ok {
		t.Fatalf("the fast reader refused what encodeAttempt wrote: %s", got)
	}
	if !reflect.DeepEqual(fast, back) {
		t.Fatalf("the fast reader read %+v, encoding/json %+v", fast, back)
	}
}

// checkDecode fails unless decodeAttempt reads s as encoding/json does
// (and refuses what it refuses), and the fast reader takes s only when it
// reads it the same way.
func checkDecode(t *testing.T, s string) {
	t.Helper()
	var want attemptJSON
	wantErr := json.Unmarshal([]byte(s), &want)
	if fast, ok := parseAttempt(s); ok {
		if wantErr != nil {
			t.Fatalf("the fast reader took %q, which encoding/json refuses: %v", s, wantErr)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("%q: the fast reader read %+v, encoding/json %+v", s, fast, want)
		}
	}
	got, err := decodeAttempt(s)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: decodeAttempt error %v, encoding/json %v", s, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want.attempt()) {
		t.Fatalf("%q: decodeAttempt read %+v, encoding/json %+v", s, got, want.attempt())
	}
}

func TestEncodeAttemptWritesWhatEncodingJSONWrites(t *testing.T) {
	a := sampleAttempt()
	checkEncode(t, a)
	checkEncode(t, delivery.Attempt{Start: time.UnixMilli(0), URL: ""}) // every omitempty field omitted
	checkEncode(t, delivery.Attempt{Number: -1, Start: time.UnixMilli(-5), Latency: -time.Second, URL: "u"})
	odd := sampleAttempt()
	odd.Error = "ctl \x00\x01\x1f\b\f\t\x7f, invalid \xff\xfe UTF-8, line sep \u2028 para \u2029, emoji 🎙️, backslash \\ quote \""
	odd.RequestHeaders = map[string]string{"\xffkey": "v\xc3", "a\"b": "<&>", "Z": ""}
	checkEncode(t, odd)
	long := sampleAttempt()
	long.Response = strings.Repeat("é", delivery.MaxResponseBytes) // cut inside a rune
	checkEncode(t, long)
}

func TestDecodeAttemptReadsWhatEncodingJSONReads(t *testing.T) {
	sample := sampleAttempt()
	b := encodeAttempt(&sample)
	compact := string(b)
	for _, s := range []string{
		compact,
		` ` + compact,
		compact + "\n",
		strings.Replace(compact, `"number":3,`, `"number" : 3 ,`, 1),
		strings.Replace(compact, `"number"`, `"Number"`, 1), // encoding/json matches keys without case
		strings.Replace(compact, `"number":3`, `"number":3,"extra":[1,{"a":null}]`, 1),
		strings.Replace(compact, `"number":3`, `"number":3.0`, 1),
		strings.Replace(compact, `"number":3`, `"number":3e0`, 1),
		strings.Replace(compact, `"number":3`, `"number":03`, 1),
		strings.Replace(compact, `"number":3`, `"number":-0`, 1),
		strings.Replace(compact, `"number":3`, `"number":99999999999999999999`, 1),
		strings.Replace(compact, `"number":3`, `"number":"3"`, 1),
		strings.Replace(compact, `"number":3`, `"number":3,"number":4`, 1),
		strings.Replace(compact, `"error":"receiver`, `"error":null,"error":"receiver`, 1),
		strings.Replace(compact, `"error":"receiver`, `"error":"\ud83c\udf99 \ud800 \u00E9\/\u0000receiver`, 1),
		strings.Replace(compact, `"error":"receiver`, `"error":"`+"\xff"+`receiver`, 1),
		strings.Replace(compact, `"error":"receiver`, `"error":"`+"\t"+`receiver`, 1),
		strings.Replace(compact, `"error":"receiver`, `"error":"\xreceiver`, 1),
		strings.Replace(compact, `"request_headers":{`, `"request_headers":{},"request_headers":{`, 1),
		strings.Replace(compact, `"request_headers":{`, `"request_headers":{"Content-Type":"x",`, 1),
		`{"number":1,"start":2,"latency_ms":3,"request_headers":{},"url":""}`,
		`{"url":"a"}`,
		`{}`,
		`{"number":1}x`,
		`{"number":1`,
		`{"number":1,}`,
		`{"url":"\u12"}`,
		`{"url":"\udbff\udfff"}`,
		`{"url":"\udc00"}`,
		`null`,
		``,
	} {
		checkDecode(t, s)
	}
	if _, ok := parseAttempt(compact); !ok {
		t.Fatal("the fast reader refused encodeAttempt's output")
	}
}

// FuzzAttemptCodec: encodeAttempt writes what json.Marshal writes, and
// whatever the fast reader takes it reads as encoding/json does.
func FuzzAttemptCodec(f *testing.F) {
	a := sampleAttempt()
	b := encodeAttempt(&a)
	f.Add(a.Number, ms(a.Start), a.StatusCode, a.Latency.Milliseconds(), string(a.ErrorType), a.Error, a.Response, "Webhook-Id", "msg_1", a.TraceID, a.URL, string(b))
	f.Add(0, int64(0), 0, int64(0), "", "", "", "", "", "", "", `{"number":1,"start":2,"latency_ms":3,"url":"\u00e9\n"}`)
	f.Fuzz(func(t *testing.T, number int, start int64, status int, latency int64, errType, errMsg, resp, hk, hv, trace, url, raw string) {
		a := delivery.Attempt{
			Number: number, Start: time.UnixMilli(start), StatusCode: status, Latency: time.Duration(latency) * time.Millisecond,
			ErrorType: delivery.ErrorType(errType), Error: errMsg, Response: resp, TraceID: trace, SpanID: trace, URL: url,
		}
		if hk != "" || hv != "" {
			a.RequestHeaders = map[string]string{hk: hv, "Webhook-Id": hv + hk}
		}
		if start > -1<<43 && start < 1<<43 && latency > -1<<43 && latency < 1<<43 { // within time's range
			checkEncode(t, a)
		}
		checkDecode(t, raw)
	})
}

// BenchmarkAttemptCodec compares encoding/json with this file's writer and
// reader on a typical entry, in one run.
func BenchmarkAttemptCodec(b *testing.B) {
	a := sampleAttempt()
	enc := encodeAttempt(&a)
	s := string(enc)
	b.Run("encode/encoding-json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(toAttemptJSON(&a))
		}
	})
	b.Run("encode/this", func(b *testing.B) {
		for b.Loop() {
			_ = encodeAttempt(&a)
		}
	})
	b.Run("decode/encoding-json", func(b *testing.B) {
		for b.Loop() {
			var j attemptJSON
			_ = json.Unmarshal([]byte(s), &j)
		}
	})
	b.Run("decode/this", func(b *testing.B) {
		for b.Loop() {
			_, _ = decodeAttempt(s)
		}
	})
}
