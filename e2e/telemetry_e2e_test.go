package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

// span is one finished span, from the collector or the test's recorder.
type span struct {
	TraceID, SpanID, ParentID string
	Name, Service, Kind       string
	Attrs                     map[string]string
	Duration                  time.Duration // 0 for spans from a recorder
}

// otlpCollector is an OTLP/HTTP trace receiver (POST /v1/traces with
// ExportTraceServiceRequest protobufs, gzip or not) that keeps every span.
type otlpCollector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []span
}

func newOTLPCollector(t testing.TB) *otlpCollector {
	c := &otlpCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Close)
	return c
}

func (c *otlpCollector) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []span
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				got = append(got, fromOTLP(service, sp))
			}
		}
	}
	c.mu.Lock()
	c.spans = append(c.spans, got...)
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func fromOTLP(service string, sp *tracepb.Span) span {
	s := span{
		TraceID: hex.EncodeToString(sp.GetTraceId()), SpanID: hex.EncodeToString(sp.GetSpanId()),
		ParentID: hex.EncodeToString(sp.GetParentSpanId()), Name: sp.GetName(), Service: service,
		Kind: strings.ToLower(strings.TrimPrefix(sp.GetKind().String(), "SPAN_KIND_")), Attrs: map[string]string{},
		Duration: time.Duration(sp.GetEndTimeUnixNano() - sp.GetStartTimeUnixNano()),
	}
	for _, kv := range sp.GetAttributes() {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			s.Attrs[kv.GetKey()] = v.GetStringValue()
		default:
			s.Attrs[kv.GetKey()] = strconv.FormatInt(v.GetIntValue(), 10)
		}
	}
	return s
}

// Trace returns the spans of one trace received so far.
func (c *otlpCollector) Trace(id string) []span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []span
	for _, s := range c.spans {
		if s.TraceID == id {
			out = append(out, s)
		}
	}
	return out
}

func fromRecorder(service string, ro sdktrace.ReadOnlySpan) span {
	s := span{
		TraceID: ro.SpanContext().TraceID().String(), SpanID: ro.SpanContext().SpanID().String(),
		Name: ro.Name(), Service: service, Kind: ro.SpanKind().String(), Attrs: map[string]string{},
	}
	if ro.Parent().IsValid() {
		s.ParentID = ro.Parent().SpanID().String()
	}
	for _, kv := range ro.Attributes() {
		s.Attrs[string(kv.Key)] = kv.Value.String()
	}
	return s
}

// otelEnv makes every process export its spans to the collector quickly.
func otelEnv(collectorURL string) map[string]string {
	return map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": collectorURL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
	}
}

// tracedProducer is the transcription pipeline as the test plays it: a
// gRPC client of ingestion instrumented with otelgrpc, recording its spans.
func tracedProducer(t testing.TB, s *Suite, tp trace.TracerProvider) (ingestionv1.IngestionServiceClient, context.Context) {
	cc, err := grpc.NewClient(s.Addrs["ingestion"], grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithPropagators(propagation.TraceContext{}))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+producerToken)
	return ingestionv1.NewIngestionServiceClient(cc), ctx
}

// tracedReceiver is a test receiver that continues the trace: its handler
// is wrapped in otelhttp with the test's tracer provider.
func tracedReceiver(tp trace.TracerProvider) *Receiver {
	rc := &Receiver{inflight: map[string]int{}}
	rc.Server = httptest.NewServer(otelhttp.NewHandler(http.HandlerFunc(rc.serve), "receiver",
		otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{})))
	return rc
}

// TestOneTracePerEvent: the producer's PublishEvent client span, ingestion
// (server span, validate, store, fan-out), the registry lookup, delivery's
// Schedule, attempts 1–3 of a receiver that fails twice and the receiver's
// own server spans form one trace with every parent link inside it. The
// services export over real OTLP/HTTP to a collector in the test; the
// producer and the receiver record in memory (tracetest).
func TestOneTracePerEvent(t *testing.T) {
	col := newOTLPCollector(t)
	env := otelEnv(col.URL)
	env["DELIVERY_RETRY_SCHEDULE"] = "0s,300ms,300ms,10s"
	env["LOG_LEVEL"] = "info"
	s := startSuite(t, SuiteOptions{Env: env})

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	rc := tracedReceiver(tp)
	defer rc.Close()
	rc.Respond = func(n int, _ *http.Request) int {
		if n <= 2 {
			return 503
		}
		return 200
	}
	acct, key := s.NewAccount("acme")
	ep, secret := s.NewEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := tracedProducer(t, s, tp)
	ev := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_trace"), "").GetEvent()
	traceID := ev.GetTraceId()
	if len(traceID) != 32 {
		t.Fatalf("event trace id %q", traceID)
	}

	var all []span
	eventually(t, 20*time.Second, "attempts 1-3 and the receiver's spans", func() bool {
		all = all[:0]
		for _, ro := range rec.Ended() {
			svc := "producer"
			if ro.SpanKind() == trace.SpanKindServer {
				svc = "receiver"
			}
			all = append(all, fromRecorder(svc, ro))
		}
		all = append(all, col.Trace(traceID)...)
		return count(all, func(s span) bool { return s.Service == "receiver" }) >= 3 &&
			count(all, func(s span) bool { return s.Name == "webhook.attempt" && s.TraceID == traceID }) >= 3
	})

	t.Logf("trace %s:%s", traceID, describe(all))
	byID := map[string]span{}
	for _, s := range all {
		if s.TraceID != traceID {
			t.Errorf("span %s/%s in trace %s, want %s", s.Service, s.Name, s.TraceID, traceID)
		}
		byID[s.SpanID] = s
	}
	var root span
	for _, s := range all {
		if s.ParentID == "" {
			if root.SpanID != "" {
				t.Errorf("second root span %s/%s", s.Service, s.Name)
			}
			root = s
			continue
		}
		if _, ok := byID[s.ParentID]; !ok {
			t.Errorf("span %s/%s: parent %s is not in the trace", s.Service, s.Name, s.ParentID)
		}
	}
	const publishRPC = "voxscriber.webhooks.ingestion.v1.IngestionService/PublishEvent"
	if root.Service != "producer" || root.Name != publishRPC || root.Kind != "client" {
		t.Fatalf("root span %+v, want the producer's PublishEvent client span", root)
	}
	// under returns whether s descends from a span matching anc.
	under := func(s span, anc func(span) bool) bool {
		for p, ok := byID[s.ParentID]; ok; p, ok = byID[p.ParentID] {
			if anc(p) {
				return true
			}
		}
		return false
	}
	isIngestServer := func(s span) bool { return s.Service == "ingestion" && s.Name == publishRPC && s.Kind == "server" }
	find := func(what string, f func(span) bool) span {
		t.Helper()
		for _, s := range all {
			if f(s) {
				return s
			}
		}
		t.Fatalf("no %s span in the trace; spans: %s", what, describe(all))
		return span{}
	}
	srv := find("ingestion PublishEvent server", isIngestServer)
	if srv.ParentID != root.SpanID {
		t.Errorf("ingestion server span's parent is %s, want the producer's span", srv.ParentID)
	}
	for _, name := range []string{"ingest.validate", "ingest.store", "ingest.fanout"} {
		sp := find(name, func(s span) bool { return s.Service == "ingestion" && s.Name == name })
		if !under(sp, isIngestServer) {
			t.Errorf("%s is not under ingestion's PublishEvent span", name)
		}
	}
	lookup := find("registry ListSubscribers", func(s span) bool {
		return s.Service == "registry" && s.Kind == "server" && strings.HasSuffix(s.Name, "/ListSubscribers")
	})
	if !under(lookup, isIngestServer) {
		t.Errorf("the registry lookup is not under ingestion's span")
	}
	sched := find("delivery Schedule", func(s span) bool {
		return s.Service == "delivery" && s.Kind == "server" && strings.HasSuffix(s.Name, "/Schedule")
	})
	if !under(sched, isIngestServer) {
		t.Errorf("delivery's Schedule is not under ingestion's span")
	}
	attempts := map[string]span{}
	for _, s := range all {
		if s.Name == "webhook.attempt" {
			attempts[s.Attrs["webhook.attempt"]] = s
			if s.Service != "delivery" || s.Kind != "client" || s.Attrs["webhook.event.id"] != ev.GetId() ||
				s.Attrs["webhook.endpoint.id"] != ep.ID || s.Attrs["webhook.event.type"] != "transcription.completed" {
				t.Errorf("attempt span %+v", s)
			}
		}
	}
	for n, status := range map[string]string{"1": "503", "2": "503", "3": "200"} {
		a, ok := attempts[n]
		if !ok {
			t.Fatalf("no span for attempt %s; spans: %s", n, describe(all))
		}
		if a.Attrs["http.response.status_code"] != status {
			t.Errorf("attempt %s status %q, want %s", n, a.Attrs["http.response.status_code"], status)
		}
	}
	isAttempt := func(s span) bool { return s.Name == "webhook.attempt" }
	for _, s := range all {
		if s.Service == "receiver" && !under(s, isAttempt) {
			t.Errorf("receiver span %s is not under an attempt span", s.SpanID)
		}
	}

	// Logs: the failed attempts' lines carry their attempt span; no
	// credential appears in any service's log.
	failed := 0
	for _, line := range logLines(t, s, "delivery") {
		if line["msg"] != "delivery attempt failed" {
			continue
		}
		failed++
		n := fmt.Sprint(line["attempt"])
		if line["trace_id"] != traceID || line["span_id"] != attempts[n].SpanID {
			t.Errorf("log line of attempt %s has trace_id %v span_id %v, want %s %s", n, line["trace_id"], line["span_id"], traceID, attempts[n].SpanID)
		}
	}
	if failed != 2 {
		t.Errorf("%d 'delivery attempt failed' log lines, want 2", failed)
	}
	for _, name := range []string{"registry", "ingestion", "delivery", "gateway"} {
		b, _ := os.ReadFile(filepath.Join(s.logDir, name+"-0.log"))
		for what, v := range map[string]string{"API key": key, "endpoint secret": secret, "admin token": adminToken,
			"producer token": producerToken, "internal token": internalToken, "SECRETS_KEY": secretsKey} {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s log contains the %s", name, what)
			}
		}
	}
}

// logLines decodes the JSON log lines of a service's first process.
func logLines(t testing.TB, s *Suite, name string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.logDir, name+"-0.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range bytes.Split(b, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func count(spans []span, f func(span) bool) int {
	n := 0
	for _, s := range spans {
		if f(s) {
			n++
		}
	}
	return n
}

func describe(spans []span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s %s/%s %s parent=%s", s.SpanID, s.Service, s.Name, s.Kind, s.ParentID)
	}
	return b.String()
}

// scrape returns the samples of a /metrics page: "name{labels}" → value.
func scrape(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics on %s: %d %s", addr, resp.StatusCode, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sum adds the samples of a metric whose labels include every want
// (`key="value"`).
func sum(samples map[string]float64, name string, want ...string) (float64, bool) {
	total, found := 0.0, false
	for k, v := range samples {
		n, labels, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		if slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(labels, w) }) {
			continue
		}
		total, found = total+v, true
	}
	return total, found
}

// TestMetricsExposedAndMoving: every service serves /metrics on its own
// METRICS_ADDR; publishing to a receiver that fails once moves the event,
// outcome, latency and schedule metrics.
func TestMetricsExposedAndMoving(t *testing.T) {
	addrs := map[string]string{}
	perService := map[string]map[string]string{}
	for _, name := range []string{"registry", "ingestion", "delivery", "gateway"} {
		addrs[name] = "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
		perService[name] = map[string]string{"METRICS_ADDR": addrs[name]}
	}
	s := startSuite(t, SuiteOptions{
		Env:        map[string]string{"DELIVERY_RETRY_SCHEDULE": "0s,200ms,10s"},
		ServiceEnv: perService,
	})
	for name, a := range addrs {
		if got := scrape(t, a); len(got) == 0 {
			t.Errorf("%s: empty /metrics", name)
		}
	}
	before := scrape(t, addrs["delivery"])
	if v, ok := sum(before, "webhook_schedule_depth"); !ok || v != 0 {
		t.Errorf("webhook_schedule_depth before any event = %v (present %v), want 0", v, ok)
	}
	for _, g := range []string{"webhook_schedule_lag_seconds", "webhook_deliveries_parked"} {
		if _, ok := sum(before, g); !ok {
			t.Errorf("delivery /metrics lacks %s", g)
		}
	}

	rc := newReceiver()
	defer rc.Close()
	rc.Respond = func(n int, _ *http.Request) int {
		if n == 1 {
			return 500
		}
		return 200
	}
	acct, key := s.NewAccount("acme")
	s.NewEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := s.Ingestion()
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_m1"), "")
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_m2"), "")
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_m2"), "upl_m2") // new key: a third event
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_m2"), "upl_m2") // repeat: not counted
	eventually(t, 15*time.Second, "four requests", func() bool { return rc.Count() >= 4 })

	ingM := scrape(t, addrs["ingestion"])
	if v, _ := sum(ingM, "webhook_events_published_total", `webhook_event_type="transcription.completed"`); v != 3 {
		t.Errorf("webhook_events_published_total{transcription.completed} = %v, want 3", v)
	}
	var dm map[string]float64
	eventually(t, 10*time.Second, "outcomes counted", func() bool {
		dm = scrape(t, addrs["delivery"])
		v, _ := sum(dm, "webhook_deliveries_total", `outcome="succeeded"`, `http_response_status_class="2xx"`)
		return v == 3
	})
	if v, _ := sum(dm, "webhook_deliveries_total", `outcome="retry"`, `http_response_status_class="5xx"`); v != 1 {
		t.Errorf("webhook_deliveries_total{retry,5xx} = %v, want 1", v)
	}
	if v, _ := sum(dm, "webhook_attempt_duration_seconds_count"); v != 4 {
		t.Errorf("webhook_attempt_duration_seconds_count = %v, want 4", v)
	}
	if _, ok := sum(dm, "webhook_attempt_duration_seconds_bucket", `le="0.005"`); !ok {
		t.Errorf("attempt latency histogram lacks its buckets")
	}
	if v, _ := sum(dm, "webhook_schedule_depth"); v != 0 {
		t.Errorf("webhook_schedule_depth after all succeeded = %v, want 0", v)
	}
	// gRPC metrics come from otelgrpc through the same provider.
	var rpc []string
	for k := range scrape(t, addrs["registry"]) {
		if strings.HasPrefix(k, "rpc_server_") {
			n, _, _ := strings.Cut(k, "{")
			rpc = append(rpc, n)
		}
	}
	if len(rpc) == 0 {
		t.Errorf("registry /metrics has no otelgrpc rpc_server_* metrics")
	}
	slices.Sort(rpc)
	t.Logf("registry rpc metrics: %v", slices.Compact(rpc))
}
