// Package gateway serves the public REST API (grpc-gateway over the three
// backend services), the OpenAPI document, /healthz and the dashboard.
package gateway

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/voxscriber/webhooks/gen"
	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/config"
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
	marshaler := &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitDefaultValues: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithMetadata(func(context.Context, *http.Request) metadata.MD {
			return metadata.Pairs(authn.GatewayMetadata, "1")
		}),
		runtime.WithErrorHandler(errorHandler),
	)
	if err := registryv1.RegisterRegistryServiceHandler(ctx, mux, b.Registry); err != nil {
		return nil, err
	}
	if err := ingestionv1.RegisterIngestionServiceHandler(ctx, mux, b.Ingestion); err != nil {
		return nil, err
	}
	if err := ingestionv1.RegisterStatsServiceHandler(ctx, mux, b.Ingestion); err != nil {
		return nil, err
	}
	if err := deliveryv1.RegisterDeliveryServiceHandler(ctx, mux, b.Delivery); err != nil {
		return nil, err
	}
	static, err := dashboard()
	if err != nil {
		return nil, err
	}
	h := http.NewServeMux()
	h.Handle("/v1/", http.MaxBytesHandler(mux, MaxBodyBytes))
	h.Handle("POST /v1/events", http.MaxBytesHandler(publishHandler(mux, marshaler, newPublisher(b.Ingestion)), MaxBodyBytes))
	backends := map[string]*grpc.ClientConn{"registry": b.Registry, "ingestion": b.Ingestion, "delivery": b.Delivery}
	h.Handle("GET /healthz", healthz(backends, backends)) // each opens the history store on its own
	h.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(gen.OpenAPI)
	})
	h.Handle("/", static)
	return otelhttp.NewHandler(h, "gateway", otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return r.Method + " " + r.URL.Path
	})), nil
}

// errorHandler is grpc-gateway's (google.rpc.Status JSON; ResourceExhausted
// is 429), plus a Retry-After header, in seconds, when the status carries a
// RetryInfo detail (an API key over its rate limit).
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if secs, ok := authn.RetryAfter(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// dashboardTypes are the content types of the dashboard's files, set by the
// gateway itself: the browser runs js/*.js as ES modules only when they come
// with a JavaScript type, and the type the mime package derives from the
// host's mime.types (or a Windows registry) is not to be relied on.
var dashboardTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// dashboardCSP is the dashboard's Content-Security-Policy: its own files
// only. It is a header, not a <meta> tag, because frame-ancestors works
// (and browsers stop logging an error about it) only in a header.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// dashboard serves the embedded web/ directory (index.html at /) and
// /favicon.ico, which browsers and other clients ask for by that name
// whatever the page links: it answers with the page's SVG icon.
func dashboard() (http.Handler, error) {
	static, err := fs.Sub(web, "web")
	if err != nil {
		return nil, err
	}
	icon, err := fs.ReadFile(static, "favicon.svg")
	if err != nil {
		return nil, err
	}
	files := http.FileServerFS(static)
	h := http.NewServeMux()
	h.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", dashboardTypes[".svg"])
		w.Header().Set("Cache-Control", "public, max-age=86400")
		_, _ = w.Write(icon)
	})
	h.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", dashboardCSP)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// ServeContent keeps a Content-Type that is already set; an error
		// answer (404) replaces it with text/plain.
		if t, ok := dashboardTypes[path.Ext(r.URL.Path)]; ok {
			w.Header().Set("Content-Type", t)
		}
		files.ServeHTTP(w, r)
	}))
	return h, nil
}

// healthz answers 200 only when every backend reports SERVING over
// grpc.health.v1. Its body also says whether the history store
// (PostgreSQL) answers, as every backend that uses it reports it under
// config.HistoryHealthService (each pings its own pool every 2 s): it is
// reachable when all of them reach it. That never makes the answer
// unhealthy, since delivery goes on without PostgreSQL:
//
//	{"status":"ok","ok":true,"services":{"registry":"SERVING",…},"historyStore":"reachable"}
//
// historyStore is "reachable", "unreachable: …" naming who cannot reach
// it, or "unknown: …" while a backend does not report it.
func healthz(conns, historyReporters map[string]*grpc.ClientConn) http.Handler {
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
		var historyStore string
		wg.Add(1)
		go func() {
			defer wg.Done()
			historyStore = historyState(ctx, historyReporters)
		}()
		wg.Wait()
		w.Header().Set("Content-Type", "application/json")
		status := "ok"
		if !ok {
			status = "unavailable"
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "ok": ok, "services": out, "historyStore": historyStore})
	})
}

// historyState is the history store's state as its users report it: reachable
// when every one reaches it.
func historyState(ctx context.Context, reporters map[string]*grpc.ClientConn) string {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var unreachable, unknown []string
	for name, cc := range reporters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: config.HistoryHealthService})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case status.Code(err) == codes.NotFound:
				unknown = append(unknown, name+" does not report it yet")
			case err != nil:
				unknown = append(unknown, name+" did not answer ("+status.Convert(err).Message()+")")
			case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
				unreachable = append(unreachable, name)
			}
		}()
	}
	wg.Wait()
	sort.Strings(unreachable)
	sort.Strings(unknown)
	switch {
	case len(unreachable) > 0:
		return "unreachable: " + strings.Join(unreachable, ", ") + " cannot reach PostgreSQL (DATABASE_URL); reads of archived history answer Unavailable, delivery goes on, and the archive backlog waits in Redis"
	case len(unknown) > 0:
		return "unknown: " + strings.Join(unknown, "; ")
	}
	return "reachable"
}
