package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

// apiKey is the REST view of an API key.
type apiKey struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Prefix       string `json:"prefix"`
	CreateTime   string `json:"createTime"`
	LastUsedTime string `json:"lastUsedTime"`
}

func (s *Suite) newKey(key, name string) (apiKey, string) {
	s.t.Helper()
	var out struct {
		APIKey apiKey `json:"apiKey"`
		Key    string `json:"key"`
	}
	s.MustDo(200, "POST", "/v1/api-keys", key, map[string]any{"name": name}, &out)
	if !strings.HasPrefix(out.Key, "vsk_") || out.APIKey.ID == "" || out.APIKey.Prefix != out.Key[:12] || out.APIKey.Name != name {
		s.t.Fatalf("create key: %+v", out)
	}
	return out.APIKey, out.Key
}

func (s *Suite) listKeys(key string) ([]apiKey, string) {
	s.t.Helper()
	var out struct {
		APIKeys []apiKey `json:"apiKeys"`
	}
	raw := s.MustDo(200, "GET", "/v1/api-keys", key, nil, &out)
	return out.APIKeys, string(raw)
}

// grpcAs dials a service directly (no gateway) and returns a context
// carrying an API key.
func grpcAs(t *testing.T, addr, key string) (*grpc.ClientConn, context.Context) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key)
}

// routes are every way a customer key reaches the suite: REST through
// each gateway to each backend, and gRPC straight to each replica of
// delivery and ingestion. Each returns the HTTP status or gRPC code.
func keyRoutes(t *testing.T, s *Suite, gateways, deliveries, ingestions []string) map[string]func(key string) string {
	routes := map[string]func(string) string{}
	for _, gw := range gateways {
		for _, path := range []string{"/v1/endpoints", "/v1/settings", "/v1/deliveries", "/v1/events", "/v1/api-keys"} {
			routes["REST "+gw+path] = func(key string) string {
				req, _ := http.NewRequest("GET", "http://"+gw+path, nil)
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := s.HTTP.Do(req)
				if err != nil {
					return err.Error()
				}
				resp.Body.Close()
				return strconv.Itoa(resp.StatusCode)
			}
		}
	}
	for _, addr := range deliveries {
		routes["gRPC delivery "+addr] = func(key string) string {
			cc, ctx := grpcAs(t, addr, key)
			_, err := deliveryv1.NewDeliveryServiceClient(cc).ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{})
			return status.Code(err).String()
		}
	}
	for _, addr := range ingestions {
		routes["gRPC ingestion "+addr] = func(key string) string {
			cc, ctx := grpcAs(t, addr, key)
			_, err := ingestionv1.NewIngestionServiceClient(cc).ListEvents(ctx, &ingestionv1.ListEventsRequest{})
			return status.Code(err).String()
		}
	}
	return routes
}

func ok(code string) bool      { return code == "200" || code == codes.OK.String() }
func refused(code string) bool { return code == "401" || code == codes.Unauthenticated.String() }

// revokedEverywhereWithin2s warms every cache with the first key, revokes
// it with revoke, and checks that every route refuses it within 2 s while
// the second key keeps working.
func revokedEverywhereWithin2s(t *testing.T, revoke func(s *Suite, acct, first, second string, firstKey apiKey)) {
	s := startSuite(t, SuiteOptions{})
	// A second replica of the gateway, delivery and ingestion.
	gw2 := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	dlv2 := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	ing2 := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	s.Start("gateway", map[string]string{"GATEWAY_ADDR": gw2})
	s.Start("delivery", map[string]string{"DELIVERY_ADDR": dlv2})
	s.Start("ingestion", map[string]string{"INGESTION_ADDR": ing2})

	acct, first := s.NewAccount("Acme")
	routes := keyRoutes(t, s, []string{s.Addrs["gateway"], gw2},
		[]string{s.Addrs["delivery"], dlv2}, []string{s.Addrs["ingestion"], ing2})
	for name, call := range routes { // every cache now holds the first key
		eventually(t, 20*time.Second, name+" with the first key", func() bool { return ok(call(first)) })
	}
	list, _ := s.listKeys(first)
	if len(list) != 1 || list[0].Prefix != first[:12] {
		t.Fatalf("the account's key from POST /v1/accounts is not listed: %+v", list)
	}
	_, second := s.newKey(first, "rotation") // announced: caches drop the account
	for name, call := range routes {         // so fill them again
		if got := call(first); !ok(got) {
			t.Fatalf("%s with the first key: %s", name, got)
		}
	}

	revoke(s, acct, first, second, list[0])
	revokedAt := time.Now()
	for name, call := range routes {
		for !refused(call(first)) {
			if time.Since(revokedAt) > 2*time.Second {
				t.Fatalf("%s still accepts the revoked key %v after the revoke", name, time.Since(revokedAt))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got := call(second); !ok(got) {
			t.Errorf("%s refuses the new key: %s", name, got)
		}
	}
	t.Logf("revoked key refused on %d routes within %v", len(routes), time.Since(revokedAt))
}

func TestARevokedKeyIsRefusedOnEveryRouteAndReplicaWithin2sWhileTheNewKeyWorks(t *testing.T) {
	revokedEverywhereWithin2s(t, func(s *Suite, _, _, second string, k apiKey) {
		s.MustDo(200, "DELETE", "/v1/api-keys/"+k.ID, second, nil, nil)
		keys, raw := s.listKeys(second)
		if len(keys) != 1 || keys[0].Name != "rotation" {
			t.Fatalf("after the revoke: %s", raw)
		}
	})
}

// The change feed is pub/sub, which can lose an announcement: the key
// caches' TTL still bounds how long a revoked key works. The revoke is
// made as the registry's transaction makes it, without the announcement.
func TestARevokedKeyIsRefusedWithin2sEvenWhenItsAnnouncementIsLost(t *testing.T) {
	revokedEverywhereWithin2s(t, func(s *Suite, acct, _, _ string, k apiKey) {
		if n, err := s.Redis.Client.HDel(context.Background(), "wh:{a:"+acct+"}:keys", k.ID).Result(); err != nil || n != 1 {
			t.Fatalf("revoke in Redis: %d, %v", n, err)
		}
	})
}

func TestTheAccountsLastKeyCannotBeRevoked(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	_, key := s.NewAccount("Acme")
	keys, _ := s.listKeys(key)
	code, raw := s.Do("DELETE", "/v1/api-keys/"+keys[0].ID, key, nil, nil)
	if st := decodeStatus(t, raw); code != 400 || st.Code != int(codes.FailedPrecondition) || !strings.Contains(st.Message, "last key") {
		t.Fatalf("revoking the last key: %d %s", code, raw)
	}
	s.MustDo(200, "GET", "/v1/endpoints", key, nil, nil)
}

func TestAnAccountNeverSeesAnotherAccountsKeysAndNoListShowsAKey(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	_, a := s.NewAccount("A")
	_, b := s.NewAccount("B")
	bKey, b2 := s.newKey(b, "b second")
	aKeys, aRaw := s.listKeys(a)
	bKeys, bRaw := s.listKeys(b)
	if len(aKeys) != 1 || len(bKeys) != 2 {
		t.Fatalf("A lists %s; B lists %s", aRaw, bRaw)
	}
	for _, secret := range []string{a, b, b2, authn.HashKey(a), authn.HashKey(b2)} {
		if strings.Contains(aRaw, secret) || strings.Contains(bRaw, secret) {
			t.Fatal("a list shows a key or its hash")
		}
	}
	for _, k := range bKeys {
		if k.ID == aKeys[0].ID || k.Prefix == aKeys[0].Prefix {
			t.Fatalf("B lists A's key %+v", k)
		}
	}
	for _, id := range []string{bKey.ID, bKeys[0].ID, "key_unknown"} {
		code, raw := s.Do("DELETE", "/v1/api-keys/"+id, a, nil, nil)
		if code != 404 {
			t.Fatalf("A revoking %s: %d %s", id, code, raw)
		}
	}
	if again, _ := s.listKeys(b); len(again) != 2 {
		t.Fatalf("B's keys after A's attempts: %+v", again)
	}
}

func TestPastItsRateLimitAKeyGets429WithRetryAfterAndOtherKeysAndProducersAreNotLimited(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{"API_RATE_LIMIT": "1", "API_RATE_BURST": "4"}})
	acct, key := s.NewAccount("Acme")
	_, other := s.NewAccount("Other")
	_, second := s.newKey(key, "second") // the first call of key
	s.MustDo(200, "GET", "/v1/endpoints", key, nil, nil)
	cc, ctx := grpcAs(t, s.Addrs["delivery"], key)
	if _, err := deliveryv1.NewDeliveryServiceClient(cc).ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{}); err != nil {
		t.Fatalf("direct gRPC within the burst: %v", err)
	}
	s.MustDo(200, "GET", "/v1/settings", key, nil, nil)

	// REST and direct gRPC calls share the key's one limiter: past it.
	req, _ := http.NewRequest("GET", s.BaseURL+"/v1/endpoints", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := s.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Type       string `json:"@type"`
			RetryDelay string `json:"retryDelay"`
		} `json:"details"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 429 {
		t.Fatalf("past the limit: %d, %v", resp.StatusCode, err)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if body.Code != int(codes.ResourceExhausted) || !strings.Contains(body.Message, "rate limit") ||
		len(body.Details) != 1 || !strings.HasSuffix(body.Details[0].Type, "google.rpc.RetryInfo") || body.Details[0].RetryDelay == "" {
		t.Fatalf("429 body %+v", body)
	}
	_, err = deliveryv1.NewDeliveryServiceClient(cc).ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("direct gRPC past the limit: %v", err)
	}

	// Another key of the account, another account's key and the producer
	// are not limited by it.
	for _, k := range []string{second, other} {
		s.MustDo(200, "GET", "/v1/endpoints", k, nil, nil)
	}
	for i := range 6 {
		s.MustDo(200, "POST", "/v1/events", producerToken, map[string]any{
			"accountId": acct, "type": "upload.completed",
			"data": map[string]any{"uploadId": fmt.Sprint("upl_", i), "size": 10, "format": "mp3"},
		}, nil)
	}
	// The key recovers once its interval has passed.
	time.Sleep(1100 * time.Millisecond)
	s.MustDo(200, "GET", "/v1/endpoints", key, nil, nil)
}
