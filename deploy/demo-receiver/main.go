// Command demo-receiver is the webhook receiver of the docker compose demo:
// it verifies each request's signatures with pkg/signing (both the simple
// X-Webhook-Signature scheme and Standard Webhooks), logs the event as one
// JSON line and answers 200, or 401 when a signature does not verify.
//
// Environment:
//
//	RECEIVER_ADDR   listen address (default :9999)
//	WEBHOOK_SECRET  the endpoint's whsec_ secret; several comma-separated
//	                during a rotation. Unset: requests are logged unverified.
package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/voxscriber/webhooks/pkg/signing"
)

const maxBody = 1 << 20

func main() {
	addr := os.Getenv("RECEIVER_ADDR")
	if addr == "" {
		addr = ":9999"
	}
	var secrets []string
	for _, s := range strings.Split(os.Getenv("WEBHOOK_SECRET"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			secrets = append(secrets, s)
		}
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	mux := http.NewServeMux()
	mux.Handle("POST /", &receiver{secrets: secrets, log: log})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("demo receiver listening", "addr", addr, "verifying", len(secrets) > 0)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
}

type receiver struct {
	secrets []string
	log     *slog.Logger
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	if err := rc.verify(r.Header, body); err != nil {
		rc.log.Warn("rejected", "path", r.URL.Path, "webhook_id", r.Header.Get("webhook-id"), "err", err.Error())
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(body, &ev)
	rc.log.Info("event",
		"id", ev.ID, "type", ev.Type, "attempt", r.Header.Get("X-Webhook-Attempt"),
		"verified", len(rc.secrets) > 0, "traceparent", r.Header.Get("traceparent"),
		"data", ev.Data)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"received":true}`)
}

// verify accepts a request when X-Webhook-Signature matches the newest
// secret and the Standard Webhooks headers verify against any of them.
func (rc *receiver) verify(h http.Header, body []byte) error {
	if len(rc.secrets) == 0 {
		return nil
	}
	if err := (signing.Verifier{Secrets: rc.secrets}).VerifyRequest(h, body); err != nil {
		return err
	}
	sig := h.Get("X-Webhook-Signature")
	for _, s := range rc.secrets {
		if signing.VerifyHex(s, body, sig) == nil {
			return nil
		}
	}
	return errors.New("X-Webhook-Signature matches no secret")
}
