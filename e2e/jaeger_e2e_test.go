package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/voxscriber/webhooks/pkg/redistest"
)

// jaegerBinary is the Jaeger v2 all-in-one built by `make jaeger`
// (JAEGER_BIN overrides). `make test` builds it first, so a missing binary
// fails the test; only -short (make test-short) skips it.
func jaegerBinary(t testing.TB) string {
	p := os.Getenv("JAEGER_BIN")
	if p == "" {
		p, _ = filepath.Abs("../.cache/jaeger")
	}
	if _, err := os.Stat(p); err != nil {
		if testing.Short() {
			t.Skipf("no Jaeger binary at %s (-short): run `make jaeger`", p)
		}
		t.Fatalf("no Jaeger binary at %s: run `make jaeger`", p)
	}
	return p
}

// jaegerConfig is the all-in-one setup (OTLP in, memory storage, query
// API out) on private ports, so tests never collide with a running Jaeger.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// startJaeger runs Jaeger and returns its query and OTLP/HTTP base URLs.
func startJaeger(t testing.TB) (queryURL, otlpURL string) {
	bin := jaegerBinary(t)
	qp, gp, op := redistest.FreePort(t), redistest.FreePort(t), redistest.FreePort(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(jaegerConfig, qp, gp, op)), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "jaeger.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("jaeger log:\n%s", b)
		}
	})
	queryURL = "http://127.0.0.1:" + strconv.Itoa(qp)
	eventually(t, 30*time.Second, "jaeger query API", func() bool {
		resp, err := http.Get(queryURL + "/api/services")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return queryURL, "http://127.0.0.1:" + strconv.Itoa(op)
}

// exportingProvider sends a test party's spans (the receiver) to Jaeger.
func exportingProvider(t testing.TB, otlpURL, service string) *sdktrace.TracerProvider {
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(otlpURL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// TestTraceInJaeger: an event's whole trace — the pipeline's publish span,
// registry, ingestion, delivery and the receiver — is retrievable through
// Jaeger's query API, and `vxctl trace <event id>` prints it.
func TestTraceInJaeger(t *testing.T) {
	queryURL, otlpURL := startJaeger(t)
	env := otelEnv(otlpURL)
	env["DELIVERY_RETRY_SCHEDULE"] = "0s,200ms,10s"
	s := startSuite(t, SuiteOptions{Env: env})

	tp := exportingProvider(t, otlpURL, "pipeline")
	rtp := exportingProvider(t, otlpURL, "receiver")
	rc := tracedReceiver(rtp)
	defer rc.Close()
	rc.Respond = func(n int, _ *http.Request) int {
		if n == 1 {
			return 503
		}
		return 200
	}
	acct, key := s.NewAccount("acme")
	s.NewEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := tracedProducer(t, s, tp)
	ev := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_jaeger"), "").GetEvent()
	eventually(t, 15*time.Second, "two attempts", func() bool { return rc.Count() >= 2 })

	var got struct {
		Data []struct {
			Spans []struct {
				OperationName string `json:"operationName"`
				ProcessID     string `json:"processID"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	want := []string{"pipeline", "ingestion", "registry", "delivery", "receiver"}
	var seen map[string]int
	eventually(t, 20*time.Second, "the whole trace in Jaeger", func() bool {
		resp, err := http.Get(queryURL + "/api/traces/" + ev.GetTraceId())
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&got) != nil || len(got.Data) != 1 {
			return false
		}
		seen = map[string]int{}
		attempts := 0
		for _, sp := range got.Data[0].Spans {
			seen[got.Data[0].Processes[sp.ProcessID].ServiceName]++
			if sp.OperationName == "webhook.attempt" {
				attempts++
			}
		}
		for _, w := range want {
			if seen[w] == 0 {
				return false
			}
		}
		return attempts == 2 && seen["receiver"] == 2
	})
	t.Logf("jaeger holds trace %s with spans per service %v", ev.GetTraceId(), seen)

	vxctl := filepath.Join(t.TempDir(), "vxctl")
	if out, err := exec.Command("go", "build", "-o", vxctl, "github.com/voxscriber/webhooks/cmd/vxctl").CombinedOutput(); err != nil {
		t.Fatalf("building vxctl: %v\n%s", err, out)
	}
	cmd := exec.Command(vxctl, "trace", "--gateway", s.BaseURL, "--jaeger", queryURL, ev.GetId())
	cmd.Env = append(os.Environ(), "VXCTL_API_KEY="+key)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vxctl trace: %v\n%s", err, out)
	}
	t.Logf("vxctl trace %s:\n%s", ev.GetId(), out)
	for _, w := range append(want, "trace "+ev.GetTraceId(), "webhook.attempt", "attempt 1, HTTP 503", "attempt 2, HTTP 200", "└─ ") {
		if !strings.Contains(string(out), w) {
			t.Errorf("vxctl output lacks %q", w)
		}
	}
}
