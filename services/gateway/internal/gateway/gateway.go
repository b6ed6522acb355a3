// Package gateway serves the public REST API (grpc-gateway over the three
// backend services), the OpenAPI document, /healthz and the dashboard.
package gateway

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/voxscriber/webhooks/gen"
	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
)

//go:embed web
var web embed.FS

// MaxBodyBytes bounds a request body (a batch of 500 events fits).
const MaxBodyBytes = 32 << 20

// Backends are the connections to the three services.
type Backends struct {
	Registry, Ingestion, Delivery *grpc.ClientConn
}

// New returns the gateway's HTTP handler.
func New(ctx context.Context, b Backends) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitDefaultValues: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		runtime.WithMetadata(func(context.Context, *http.Request) metadata.MD {
			return metadata.Pairs(authn.GatewayMetadata, "1")
		}),
	)
	if err := registryv1.RegisterRegistryServiceHandler(ctx, mux, b.Registry); err != nil {
		return nil, err
	}
	if err := ingestionv1.RegisterIngestionServiceHandler(ctx, mux, b.Ingestion); err != nil {
		return nil, err
	}
	if err := deliveryv1.RegisterDeliveryServiceHandler(ctx, mux, b.Delivery); err != nil {
		return nil, err
	}
	static, err := fs.Sub(web, "web")
	if err != nil {
		return nil, err
	}
	h := http.NewServeMux()
	h.Handle("/v1/", http.MaxBytesHandler(mux, MaxBodyBytes))
	h.Handle("GET /healthz", healthz(map[string]*grpc.ClientConn{
		"registry": b.Registry, "ingestion": b.Ingestion, "delivery": b.Delivery,
	}))
	h.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(gen.OpenAPI)
	})
	h.Handle("/", http.FileServerFS(static))
	return otelhttp.NewHandler(h, "gateway", otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return r.Method + " " + r.URL.Path
	})), nil
}

// healthz answers 200 only when every backend reports SERVING over
// grpc.health.v1.
func healthz(conns map[string]*grpc.ClientConn) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var mu sync.Mutex
		var wg sync.WaitGroup
		out := map[string]string{}
		ok := true
		for name, cc := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := "UNREACHABLE"
				resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
				if err == nil {
					st = resp.GetStatus().String()
				}
				mu.Lock()
				defer mu.Unlock()
				out[name] = st
				if st != healthpb.HealthCheckResponse_SERVING.String() {
					ok = false
				}
			}()
		}
		wg.Wait()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": ok, "services": out})
	})
}
