package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ids"
)

const chromiumPath = "/usr/bin/chromium"

// TestDashboardInBrowser starts the real suite with a local receiver and runs
// the Node browser tests in e2e/browser (Debian chromium driven by
// playwright-core) against the dashboard. The Node side controls the
// receiver and can mark an endpoint DISABLED through a small control server.
// Everything it needs is a prerequisite of `make test`
// (scripts/test-prereqs.sh), so a missing chromium, node or node_modules
// fails the test; only -short (make test-short) skips it.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no %s: run apt-get install -y chromium", chromiumPath)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("no node on PATH: run apt-get install -y nodejs npm")
	}
	dir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatal("no e2e/browser/node_modules: run `make test-prereqs` (npm ci in e2e/browser)")
	}

	dbURL := historyDatabase(t)
	s := startSuite(t, SuiteOptions{Env: map[string]string{"JAEGER_UI_URL": "http://jaeger.test:16686", "DATABASE_URL": dbURL}})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("dashboard")
	ctl := httptest.NewServer(controlHandler(t, s, rc, acct, dbURL))
	defer ctl.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "dashboard.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"BASE_URL="+s.BaseURL,
		"API_KEY="+key,
		"ACCOUNT_ID="+acct,
		"PRODUCER_TOKEN="+producerToken,
		"RECEIVER_URL="+rc.URL+"/webhook/voxscriber",
		"CONTROL_URL="+ctl.URL,
		"CHROMIUM_PATH="+chromiumPath,
		"SCREENSHOT_DIR="+filepath.Join(dir, "screenshots"),
	)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test output:\n%s", out)
	if err != nil {
		t.Fatalf("browser tests failed: %v", err)
	}
}

// controlHandler lets the Node test steer the world around the dashboard:
//
//	POST /receiver?code=500        the receiver answers code from now on
//	POST /disable?endpointId=&reason=  the registry marks the endpoint DISABLED
//	                               (what the delivery service does after
//	                               repeated failures), over the internal RPC
//	POST /archive?eventId=&endpointId=  the event moves to the history tier
//	                               (history.Archive, then its Redis hash is
//	                               deleted, as the archiver does) with one
//	                               succeeded attempt to that endpoint (the
//	                               rollups behind the charts)
func controlHandler(t *testing.T, s *Suite, rc *Receiver, acct, dbURL string) http.Handler {
	store, err := history.Open(t.Context(), dbURL, history.Config{Retention: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	events := eventstore.New(s.Redis.Client, time.Hour)
	cc, err := grpc.NewClient(s.Addrs["registry"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	reg := registryv1.NewRegistryInternalServiceClient(cc)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /receiver", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil || code < 100 || code > 599 {
			http.Error(w, "code must be an HTTP status", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.Respond = func(int, *http.Request) int { return code }
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /disable", func(w http.ResponseWriter, r *http.Request) {
		ctx := metadata.AppendToOutgoingContext(r.Context(), "authorization", "Bearer "+internalToken)
		_, err := reg.DisableEndpointBySystem(ctx, &registryv1.DisableEndpointBySystemRequest{
			AccountId: acct, EndpointId: r.URL.Query().Get("endpointId"), Reason: r.URL.Query().Get("reason"),
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /archive", func(w http.ResponseWriter, r *http.Request) {
		if err := archiveEvent(r.Context(), s, store, events, r.URL.Query().Get("eventId"), r.URL.Query().Get("endpointId")); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// archiveEvent moves an event to history as the archiver does (commit,
// then delete the Redis hash), with one succeeded 12 ms attempt to
// endpointID now, so the per-minute rollups count it.
func archiveEvent(ctx context.Context, s *Suite, store *history.Store, events *eventstore.Store, eventID, endpointID string) error {
	ev, err := events.Get(ctx, eventID)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	_, err = store.Archive(ctx, history.Batch{
		Events: []history.Event{{ID: ev.ID, AccountID: ev.AccountID, Type: ev.Type, Payload: ev.Payload, CreateTime: ev.CreateTime,
			IdempotencyKey: ev.IdempotencyKey, UploadID: ev.UploadID, TraceID: ev.TraceID, DeliveryCount: ev.DeliveryCount}},
		Deliveries: []history.DeliveryRecord{{Delivery: history.Delivery{
			ID: ids.Derive(ids.Delivery, ev.ID, endpointID), EventID: ev.ID, EndpointID: endpointID, AccountID: ev.AccountID,
			EventType: ev.Type, UploadID: ev.UploadID, Status: history.StatusSucceeded, Version: 1 << 40, Attempts: 1,
			FirstAttempt: now, CreateTime: ev.CreateTime, UpdateTime: now,
		}, Attempts: []history.Attempt{{Number: 1, Start: now, StatusCode: 200, Latency: 12 * time.Millisecond}}}},
	})
	if err != nil {
		return err
	}
	return s.Redis.Client.Del(ctx, eventstore.Key(eventID)).Err()
}
