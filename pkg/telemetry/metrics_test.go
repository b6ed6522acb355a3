package telemetry_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/telemetry"
)

// TestServeMetrics: with METRICS_ADDR the suite's instruments appear on
// GET /metrics in Prometheus spelling (units as suffixes, counters _total),
// including Redis errors counted by the redisx hook; without it nothing is
// served and the meter provider stays the no-op one.
func TestServeMetrics(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	tel, err := telemetry.Setup(ctx, "test", "info", &logs)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	if addr, err := tel.ServeMetrics(ctx, ""); addr != "" || err != nil || tel.MeterProvider != nil {
		t.Fatalf("empty METRICS_ADDR: %q %v %v", addr, err, tel.MeterProvider)
	}

	addr, err := tel.ServeMetrics(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := telemetry.Meter("test")
	c, _ := m.Int64Counter("webhook.endpoints.disabled", metric.WithUnit("{endpoint}"))
	c.Add(ctx, 2)
	h, _ := m.Float64Histogram("webhook.attempt.duration", metric.WithUnit("s"))
	h.Record(ctx, 0.02)

	rdb, err := redisx.NewClient("redis://127.0.0.1:1/0") // nothing listens on port 1
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_ = rdb.Get(cctx, "k").Err()
	cancel()

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`webhook_endpoints_disabled_total{`,
		`webhook_attempt_duration_seconds_bucket{`, `le="0.025"`,
		`redis_client_errors_total{db_operation_name="`,
		`service_name="test"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"serving metrics"`) {
		t.Errorf("no serving-metrics log line: %s", logs.String())
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{0: "", 200: "2xx", 204: "2xx", 301: "3xx", 429: "4xx", 503: "5xx", 600: ""} {
		if got := telemetry.StatusClass(code); got != want {
			t.Errorf("StatusClass(%d) = %q, want %q", code, got, want)
		}
	}
}
