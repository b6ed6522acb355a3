package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/voxscriber/webhooks/pkg/config"
)

// backend is a real gRPC server with only the health service.
func backend(t *testing.T) (*grpc.ClientConn, *health.Server) {
	t.Helper()
	hs := health.NewServer()
	return serveGRPC(t, func(srv *grpc.Server) { healthpb.RegisterHealthServer(srv, hs) }), hs
}

// serveGRPC serves what register registers on loopback and dials it.
func serveGRPC(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestHealthzOpenAPIAndDashboard(t *testing.T) {
	reg, regHealth := backend(t)
	ing, ingHealth := backend(t)
	del, delHealth := backend(t)
	h, err := New(context.Background(), Backends{Registry: reg, Ingestion: ing, Delivery: del})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(path string) (*http.Response, map[string]any) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}
	if resp, m := get("/healthz"); resp.StatusCode != 200 || m["ok"] != true || m["status"] != "ok" ||
		!strings.HasPrefix(m["historyStore"].(string), "unknown") {
		t.Fatalf("healthz with all backends serving, history not reported: %d %v", resp.StatusCode, m)
	}
	ingHealth.SetServingStatus(config.HistoryHealthService, healthpb.HealthCheckResponse_SERVING)
	if resp, m := get("/healthz"); resp.StatusCode != 200 || !strings.Contains(m["historyStore"].(string), "delivery does not report it yet") {
		t.Fatalf("healthz with history reachable from ingestion only: %d %v", resp.StatusCode, m)
	}
	for _, hs := range []*health.Server{regHealth, delHealth} {
		hs.SetServingStatus(config.HistoryHealthService, healthpb.HealthCheckResponse_SERVING)
	}
	if resp, m := get("/healthz"); resp.StatusCode != 200 || m["historyStore"] != "reachable" {
		t.Fatalf("healthz with history reachable: %d %v", resp.StatusCode, m)
	}
	// An unreachable PostgreSQL is reported, never unhealthy.
	ingHealth.SetServingStatus(config.HistoryHealthService, healthpb.HealthCheckResponse_NOT_SERVING)
	if resp, m := get("/healthz"); resp.StatusCode != 200 || m["status"] != "ok" ||
		!strings.HasPrefix(m["historyStore"].(string), "unreachable: ingestion cannot reach") {
		t.Fatalf("healthz with history unreachable: %d %v", resp.StatusCode, m)
	}
	regHealth.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if resp, m := get("/healthz"); resp.StatusCode != 503 || m["status"] != "unavailable" {
		t.Fatalf("healthz with registry NOT_SERVING: %d %v", resp.StatusCode, m)
	}
	if resp, m := get("/openapi.json"); resp.StatusCode != 200 || m["paths"] == nil {
		t.Fatalf("openapi.json: %d", resp.StatusCode)
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("dashboard: %v %v", resp, err)
	}
	resp.Body.Close()
	// REST routes reach the backends (here: no such service → an RPC error, not a 404 from the mux).
	resp, err = http.Get(srv.URL + "/v1/event-types")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound && resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/v1/event-types not routed")
	}
}
