package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// AttemptDurationBuckets are the histogram boundaries (seconds) of
// webhook.attempt.duration: receivers answer in milliseconds to seconds.
var AttemptDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// ServeMetrics turns on OpenTelemetry metrics with the Prometheus exporter
// and serves them as GET /metrics on addr (METRICS_ADDR), on a listener of
// its own so the scrape port is never the API port. An empty addr leaves
// metrics off: the global meter provider stays the no-op one and every
// instrument costs nothing. Instruments made from otel.GetMeterProvider()
// before this call are delegated to the new provider. It returns the
// address listened on (useful with port 0).
func (t *Telemetry) ServeMetrics(ctx context.Context, addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("METRICS_ADDR %s: %w", addr, err)
	}
	reg := promclient.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		_ = lis.Close()
		return "", err
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithResource(t.resource),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Name: "webhook.attempt.duration"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: AttemptDurationBuckets}},
		)),
	)
	otel.SetMeterProvider(mp)
	t.MeterProvider = mp

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logger.Error("metrics server stopped", "error", err.Error())
		}
	}()
	t.shutdown = append(t.shutdown, func(ctx context.Context) error {
		return errors.Join(srv.Shutdown(ctx), mp.Shutdown(ctx))
	})
	t.Logger.InfoContext(ctx, "serving metrics", "addr", lis.Addr().String())
	return lis.Addr().String(), nil
}

// Meter returns the suite's meter for a package: the global provider's,
// which is a no-op until ServeMetrics installs the exporting one.
func Meter(name string) metric.Meter { return otel.GetMeterProvider().Meter(name) }

// StatusClass is the http.response.status_class of a status code ("2xx"
// …), or "" when there was no response.
func StatusClass(code int) string {
	if code < 100 || code > 599 {
		return ""
	}
	return fmt.Sprintf("%dxx", code/100)
}

func newResource(service string) *resource.Resource {
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(service), semconv.ServiceVersion(Version)))
	if err != nil {
		return resource.Default()
	}
	return res
}
