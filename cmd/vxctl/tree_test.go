package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// recorded is a trace in the shape GET /api/traces/{id} answers, cut down
// to what vxctl reads: a producer span, ingestion under it, the registry
// lookup, two attempts and the receiver's span under the second.
const recorded = `{"data":[{"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spans":[
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a2","operationName":"voxscriber.webhooks.ingestion.v1.IngestionService/PublishEvent",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a1"}],
  "startTime":1000100,"duration":8000,"tags":[{"key":"rpc.grpc.status_code","type":"int64","value":0},{"key":"span.kind","type":"string","value":"server"}],"processID":"p2"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a1","operationName":"voxscriber.webhooks.ingestion.v1.IngestionService/PublishEvent",
  "references":[],"startTime":1000000,"duration":9500,"tags":[],"processID":"p1"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a3","operationName":"voxscriber.webhooks.registry.v1.RegistryInternalService/ListSubscribers",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a2"}],"startTime":1002000,"duration":650,"tags":[],"processID":"p3"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a5","operationName":"webhook.attempt",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a2"}],"startTime":1310000,"duration":4200,
  "tags":[{"key":"webhook.attempt","type":"int64","value":2},{"key":"http.response.status_code","type":"int64","value":200}],"processID":"p4"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a4","operationName":"webhook.attempt",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a2"}],"startTime":1010000,"duration":2500000,
  "tags":[{"key":"webhook.attempt","type":"int64","value":1},{"key":"http.response.status_code","type":"int64","value":503},
          {"key":"otel.status_code","type":"string","value":"ERROR"},{"key":"otel.status_description","type":"string","value":"HTTP 503"}],"processID":"p4"},
 {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a6","operationName":"POST",
  "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a5"}],"startTime":1311000,"duration":2000,
  "tags":[{"key":"http.response.status_code","type":"int64","value":200}],"processID":"p5"}
 ],"processes":{"p1":{"serviceName":"pipeline","tags":[]},"p2":{"serviceName":"ingestion","tags":[]},"p3":{"serviceName":"registry","tags":[]},
  "p4":{"serviceName":"delivery","tags":[]},"p5":{"serviceName":"receiver","tags":[]}}}],"total":0,"limit":0,"offset":0,"errors":null}`

func decode(t *testing.T) *jaegerTrace {
	t.Helper()
	var out struct{ Data []jaegerTrace }
	if err := json.Unmarshal([]byte(recorded), &out); err != nil {
		t.Fatal(err)
	}
	return &out.Data[0]
}

func TestPrintTree(t *testing.T) {
	var b bytes.Buffer
	if err := printTree(&b, decode(t)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	// Structure: order, indentation, services, durations and statuses.
	want := []struct{ prefix, service, duration, status string }{
		{"voxscriber.webhooks.ingestion.v1.IngestionService/PublishEvent ", "pipeline", "9.5ms", "ok"},
		{"└─ voxscriber.webhooks.ingestion.v1.IngestionService/PublishEvent ", "ingestion", "8.0ms", "ok"},
		{"   ├─ voxscriber.webhooks.registry.v1.RegistryInternalService/ListSubscribers ", "registry", "650µs", "ok"},
		{"   ├─ webhook.attempt ", "delivery", "2.50s", "attempt 1, HTTP 503, ERROR HTTP 503"},
		{"   └─ webhook.attempt ", "delivery", "4.2ms", "attempt 2, HTTP 200"},
		{"      └─ POST ", "receiver", "2.0ms", "HTTP 200"},
	}
	if !strings.HasPrefix(lines[0], "trace 4bf92f3577b34da6a3ce929d0e0e4736: 6 spans, 5 services, 2.51s") {
		t.Errorf("header %q", lines[0])
	}
	if !strings.HasPrefix(lines[2], "SPAN") {
		t.Errorf("column header %q", lines[2])
	}
	for i, w := range want {
		l := lines[3+i]
		f := strings.Fields(strings.TrimPrefix(l, w.prefix))
		if !strings.HasPrefix(l, w.prefix) || len(f) < 4 || f[0] != w.service || f[2] != w.duration ||
			strings.Join(f[3:], " ") != w.status {
			t.Errorf("line %d = %q\nwant %q … %s … %s … %s", i, l, w.prefix, w.service, w.duration, w.status)
		}
	}
	if len(lines) != 3+len(want)+1 {
		t.Errorf("%d lines:\n%s", len(lines), b.String())
	}
}

// TestTraceCommand runs `vxctl trace <event id>` against a fake gateway and
// a fake Jaeger query API speaking the recorded shapes.
func TestTraceCommand(t *testing.T) {
	var sawKey string
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawKey = r.Header.Get("Authorization")
		if r.URL.Path != "/v1/events/evt_1" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"event":{"id":"evt_1","traceId":"4bf92f3577b34da6a3ce929d0e0e4736"}}`))
	}))
	defer gw.Close()
	jg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/traces/4bf92f3577b34da6a3ce929d0e0e4736" {
			w.WriteHeader(404)
			w.Write([]byte(`{"data":null,"errors":[{"code":404,"msg":"trace not found"}]}`))
			return
		}
		w.Write([]byte(recorded))
	}))
	defer jg.Close()
	t.Setenv("VXCTL_API_KEY", "sk_test")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"trace", "--gateway", gw.URL, "--jaeger", jg.URL, "evt_1"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if sawKey != "Bearer sk_test" {
		t.Errorf("gateway saw Authorization %q", sawKey)
	}
	if !strings.Contains(out.String(), "└─ POST") {
		t.Errorf("output:\n%s", out.String())
	}
	err := run(context.Background(), []string{"trace", "--jaeger", jg.URL, "--trace-id", "0000"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "not in Jaeger") {
		t.Errorf("unknown trace: %v", err)
	}
}
