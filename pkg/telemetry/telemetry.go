// Package telemetry sets up tracing and logging the same way in every
// service: W3C trace context propagation, an OpenTelemetry tracer provider
// configured by the standard OTEL_* variables, and JSON logs that carry the
// trace and span ids of the request they belong to.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Version is the suite's version, sent in User-Agent and resource attributes.
const Version = "0.1.0"

// Telemetry is what a service gets from Setup.
type Telemetry struct {
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	// MeterProvider is the exporting one after ServeMetrics, else nil.
	MeterProvider metric.MeterProvider
	// Exporting reports whether spans leave the process.
	Exporting bool
	resource  *resource.Resource
	shutdown  []func(context.Context) error
}

// Shutdown flushes and stops exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// shutdownTimeout bounds the flush of exporters at exit.
const shutdownTimeout = 5 * time.Second

// Start is what every service's main does: Setup (logs to stderr), then
// the /metrics server on metricsAddr (METRICS_ADDR; off when empty). Close
// the result when the service stops.
func Start(ctx context.Context, service, level, metricsAddr string) (*Telemetry, error) {
	t, err := Setup(ctx, service, level, nil)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if _, err := t.ServeMetrics(ctx, metricsAddr); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// Close flushes and stops the exporters, waiting at most shutdownTimeout.
func (t *Telemetry) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	_ = t.Shutdown(ctx)
}

// Setup installs the global propagator and tracer provider and returns a
// logger. Spans are exported only when OTEL_TRACES_EXPORTER or an
// OTEL_EXPORTER_OTLP_*ENDPOINT is set (and OTEL_SDK_DISABLED is not true);
// trace ids are made either way, because events and attempts record them
// and receivers get traceparent.
func Setup(ctx context.Context, service, level string, out io.Writer) (*Telemetry, error) {
	if out == nil {
		out = os.Stderr
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t := &Telemetry{Logger: NewLogger(out, level).With("service", service)}
	res := newResource(service)
	t.resource = res
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exportConfigured() {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
		t.Exporting = true
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	t.TracerProvider = tp
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return t, nil
}

func exportConfigured() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	if v := os.Getenv("OTEL_TRACES_EXPORTER"); v != "" {
		return v != "none"
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewLogger returns a JSON slog logger whose records carry trace_id and
// span_id when their context holds a span.
func NewLogger(out io.Writer, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(traceHandler{slog.NewJSONHandler(out, &slog.HandlerOptions{Level: lv})})
}

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(a)}
}

func (h traceHandler) WithGroup(n string) slog.Handler { return traceHandler{h.Handler.WithGroup(n)} }

// TraceURL links a trace id to the Jaeger UI when base is set.
func TraceURL(base, traceID string) string {
	if base == "" || traceID == "" {
		return ""
	}
	return base + "/trace/" + traceID
}
