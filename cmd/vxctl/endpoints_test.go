package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// exchange is one request the fake gateway expects and its answer.
type exchange struct {
	method, path string
	query        url.Values
	body         string // JSON the request must carry (compared as values); "" for none
	status       int    // 0: 200
	answer       string
}

// fakeGateway is an HTTP server answering like the gateway's REST API: it
// checks each request against the next exchange (method, path, query,
// Authorization, Content-Type and JSON body) and fails the test on any
// request it does not expect.
type fakeGateway struct {
	t     *testing.T
	srv   *httptest.Server
	queue []exchange
	seen  int
}

const testKey = "sk_test_123"

func newFakeGateway(t *testing.T, queue ...exchange) *fakeGateway {
	t.Helper()
	g := &fakeGateway{t: t, queue: queue}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	t.Setenv("VXCTL_API_KEY", testKey)
	t.Setenv("VXCTL_GATEWAY", g.srv.URL)
	return g
}

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	t := g.t
	g.seen++
	if len(g.queue) == 0 {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusTeapot)
		return
	}
	x := g.queue[0]
	g.queue = g.queue[1:]
	if r.Method != x.method || r.URL.Path != x.path {
		t.Errorf("request %s %s, want %s %s", r.Method, r.URL.Path, x.method, x.path)
	}
	q := x.query
	if q == nil {
		q = url.Values{}
	}
	if got := r.URL.Query(); !reflect.DeepEqual(got, q) {
		t.Errorf("%s %s: query %v, want %v", r.Method, r.URL.Path, got, q)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+testKey {
		t.Errorf("%s %s: Authorization %q", r.Method, r.URL.Path, got)
	}
	b, _ := io.ReadAll(r.Body)
	switch {
	case x.body == "" && len(b) > 0:
		t.Errorf("%s %s: unexpected body %s", r.Method, r.URL.Path, b)
	case x.body != "":
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", r.Method, r.URL.Path, ct)
		}
		var got, want any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("%s %s: body %q: %v", r.Method, r.URL.Path, b, err)
		}
		if err := json.Unmarshal([]byte(x.body), &want); err != nil {
			t.Fatalf("test's body %q: %v", x.body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s %s: body %s\nwant %s", r.Method, r.URL.Path, b, x.body)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if x.status != 0 {
		w.WriteHeader(x.status)
	}
	w.Write([]byte(x.answer))
}

// done checks every expected request came.
func (g *fakeGateway) done() {
	g.t.Helper()
	if len(g.queue) > 0 {
		g.t.Errorf("%d expected requests never came, next %s %s", len(g.queue), g.queue[0].method, g.queue[0].path)
	}
}

func vxctl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

// Endpoints as the gateway writes them (proto3 JSON, EmitDefaultValues).
const (
	ep1 = `{"id":"ep_1","url":"https://hooks.example.com/a","eventTypes":["transcription.completed","transcription.failed"],
		"description":"billing","status":"ENDPOINT_STATUS_ACTIVE","headers":{"X-Token":"s3cr3t"},"disabledReason":"","disableTime":null,
		"createTime":"2026-11-26T19:43:16.123Z","updateTime":"2026-11-26T19:43:16.123Z","rateLimitPerSecond":0,"ordering":"ENDPOINT_ORDERING_ORDERED_BY_KEY"}`
	ep2 = `{"id":"ep_22","url":"https://example.org/webhooks/voxscriber","eventTypes":["*"],"description":"","status":"ENDPOINT_STATUS_DISABLED",
		"headers":{},"disabledReason":"HTTP 410 Gone","disableTime":"2026-11-27T08:00:00Z","createTime":"2026-11-20T10:00:00Z",
		"updateTime":"2026-11-27T08:00:00Z","rateLimitPerSecond":5,"ordering":"ENDPOINT_ORDERING_UNSPECIFIED"}`
	ep3 = `{"id":"ep_3","url":"https://c.example.com/","eventTypes":["upload.completed"],"status":"ENDPOINT_STATUS_INACTIVE","ordering":"ENDPOINT_ORDERING_UNORDERED"}`
)

func TestEndpointsListPages(t *testing.T) {
	g := newFakeGateway(t,
		exchange{method: "GET", path: "/v1/endpoints", query: url.Values{"pageSize": {"2"}},
			answer: `{"endpoints":[` + ep1 + `,` + ep2 + `],"nextPageToken":"tok_2"}`},
		exchange{method: "GET", path: "/v1/endpoints", query: url.Values{"pageSize": {"2"}, "pageToken": {"tok_2"}},
			answer: `{"endpoints":[` + ep3 + `],"nextPageToken":""}`},
	)
	out, errs, err := vxctl(t, "endpoints", "list", "--page-size", "2")
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	g.done()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := [][]string{
		{"ID", "STATUS", "ORDERING", "URL", "EVENT TYPES"},
		{"ep_1", "ACTIVE", "ordered-by-key", "https://hooks.example.com/a", "transcription.completed,transcription.failed"},
		{"ep_22", "DISABLED", "unordered", "https://example.org/webhooks/voxscriber", "*"},
		{"ep_3", "INACTIVE", "unordered", "https://c.example.com/", "upload.completed"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	// Aligned: every column starts at the same offset on every line.
	var cols []int
	for i, l := range lines {
		at := 0
		for j, cell := range want[i] {
			k := strings.Index(l[at:], cell)
			if k < 0 {
				t.Fatalf("line %d %q lacks %q", i, l, cell)
			}
			at += k
			if i == 0 {
				cols = append(cols, at)
			} else if at != cols[j] {
				t.Errorf("line %d: %q at column %d, header's at %d:\n%s", i, cell, at, cols[j], out)
			}
			at += len(cell)
		}
	}
}

func TestEndpointsGet(t *testing.T) {
	g := newFakeGateway(t, exchange{method: "GET", path: "/v1/endpoints/ep_22", answer: `{"endpoint":` + ep2 + `}`})
	// The id may come after the flags too.
	out, errs, err := vxctl(t, "endpoints", "get", "--timeout", "5s", "ep_22")
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	g.done()
	for _, s := range []string{"id:", "ep_22", "status:", "DISABLED", "ordering:", "unordered", "HTTP 410 Gone", "rate limit:", "5/s", "event types:"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

func TestEndpointsCreate(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	g := newFakeGateway(t,
		exchange{method: "POST", path: "/v1/endpoints",
			body:   `{"url":"https://hooks.example.com/a","eventTypes":["transcription.completed","transcription.failed"],"description":"billing","ordering":"ENDPOINT_ORDERING_ORDERED_BY_KEY"}`,
			answer: `{"endpoint":` + ep1 + `,"secret":"` + secret + `"}`},
		// Without --ordering or --description the body leaves them out
		// (the server's default: unordered).
		exchange{method: "POST", path: "/v1/endpoints",
			body:   `{"url":"https://c.example.com/","eventTypes":["upload.completed"]}`,
			answer: `{"endpoint":` + ep3 + `,"secret":"` + secret + `"}`},
	)
	out, errs, err := vxctl(t, "endpoints", "create", "--url", "https://hooks.example.com/a",
		"--events", "transcription.completed, transcription.failed", "--description", "billing", "--ordering", "ordered-by-key")
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	for _, s := range []string{"ep_1", "ordered-by-key", secret, "shown only this once"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if strings.Count(out, secret) != 1 {
		t.Errorf("secret printed %d times:\n%s", strings.Count(out, secret), out)
	}
	if strings.Contains(out, "s3cr3t") {
		t.Errorf("a header's value is printed:\n%s", out)
	}
	if _, errs, err := vxctl(t, "endpoints", "create", "--url", "https://c.example.com/", "--events", "upload.completed"); err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	g.done()
}

func TestEndpointsUpdate(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		mask string
		body string
	}{
		{"ordering", []string{"ep_1", "--ordering", "ordered-by-key"}, "ordering", `{"ordering":"ENDPOINT_ORDERING_ORDERED_BY_KEY"}`},
		{"unordered", []string{"--ordering", "unordered", "ep_1"}, "ordering", `{"ordering":"ENDPOINT_ORDERING_UNORDERED"}`},
		{"url and cleared description", []string{"ep_1", "--description", "", "--url", "https://new.example.com/h"},
			"url,description", `{"url":"https://new.example.com/h","description":""}`},
		{"all", []string{"ep_1", "--events", "a.b,c.d", "--url", "https://x.example.com", "--ordering", "unordered", "--description", "d"},
			"url,event_types,description,ordering",
			`{"url":"https://x.example.com","eventTypes":["a.b","c.d"],"description":"d","ordering":"ENDPOINT_ORDERING_UNORDERED"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, exchange{method: "PATCH", path: "/v1/endpoints/ep_1",
				query: url.Values{"updateMask": {tc.mask}}, body: tc.body, answer: `{"endpoint":` + ep1 + `}`})
			out, errs, err := vxctl(t, append([]string{"endpoints", "update"}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errs)
			}
			g.done()
			if !strings.Contains(out, "ordered-by-key") {
				t.Errorf("output:\n%s", out)
			}
		})
	}
}

// An API error (google.rpc Status JSON) is printed as
// "vxctl: <HTTP status>: <message>" with a non-zero exit.
func TestEndpointsAPIError(t *testing.T) {
	g := newFakeGateway(t,
		exchange{method: "GET", path: "/v1/endpoints/ep_other", status: http.StatusNotFound,
			answer: `{"code":5,"message":"endpoint \"ep_other\" not found","details":[]}`},
		exchange{method: "PATCH", path: "/v1/endpoints/ep_1", query: url.Values{"updateMask": {"url"}},
			body: `{"url":"http://127.0.0.1/"}`, status: http.StatusBadRequest,
			answer: `{"code":3,"message":"url: must be https","details":[]}`},
	)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"endpoints", "get", "ep_other"}, "vxctl: 404 Not Found: endpoint \"ep_other\" not found\n"},
		{[]string{"endpoints", "update", "ep_1", "--url", "http://127.0.0.1/"}, "vxctl: 400 Bad Request: url: must be https\n"},
	} {
		out, _, err := vxctl(t, tc.args...)
		var errb bytes.Buffer
		if code := report(&errb, err); code == 0 || errb.String() != tc.want {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errb.String(), tc.want)
		}
		if out != "" {
			t.Errorf("%v: output %q", tc.args, out)
		}
	}
	g.done()
}

// Refused before any request: a bad --ordering (naming the flag and the
// accepted values), update without a flag, no API key, a missing id.
func TestEndpointsRefusedLocally(t *testing.T) {
	g := newFakeGateway(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"endpoints", "create", "--url", "https://a.example.com", "--events", "upload.completed", "--ordering", "sorted"},
			[]string{"--ordering", `"sorted"`, "unordered", "ordered-by-key"}},
		{[]string{"endpoints", "update", "ep_1", "--ordering", "ENDPOINT_ORDERING_ORDERED_BY_KEY"},
			[]string{"--ordering", "unordered", "ordered-by-key"}},
		{[]string{"endpoints", "update", "ep_1"}, []string{"nothing to update", "--url", "--events", "--description", "--ordering"}},
		{[]string{"endpoints", "update", "ep_1", "--events", " , "}, []string{"--events"}},
		{[]string{"endpoints", "create", "--events", "upload.completed"}, []string{"--url"}},
		{[]string{"endpoints", "create", "--url", "https://a.example.com"}, []string{"--events"}},
		{[]string{"endpoints", "get"}, []string{"endpoint id"}},
		{[]string{"endpoints", "get", "ep_1", "ep_2"}, []string{"endpoint id"}},
		{[]string{"endpoints", "frobnicate"}, []string{"frobnicate"}},
	} {
		_, _, err := vxctl(t, tc.args...)
		if err == nil {
			t.Errorf("%v: no error", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q lacks %q", tc.args, err, w)
			}
		}
	}
	t.Setenv("VXCTL_API_KEY", "")
	if _, _, err := vxctl(t, "endpoints", "list"); err == nil || !strings.Contains(err.Error(), "VXCTL_API_KEY") {
		t.Errorf("no API key: %v", err)
	}
	if g.seen != 0 {
		t.Errorf("%d requests reached the gateway", g.seen)
	}
}

// --api-key wins over VXCTL_API_KEY.
func TestEndpointsAPIKeyFlag(t *testing.T) {
	g := newFakeGateway(t, exchange{method: "GET", path: "/v1/endpoints", answer: `{"endpoints":[],"nextPageToken":""}`})
	t.Setenv("VXCTL_API_KEY", "sk_wrong")
	out, errs, err := vxctl(t, "endpoints", "list", "--api-key", testKey)
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	g.done()
	if strings.TrimSpace(out) != "ID  STATUS  ORDERING  URL  EVENT TYPES" {
		t.Errorf("empty list: %q", out)
	}
}
