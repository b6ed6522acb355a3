package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
)

// rpcStatus is the google.rpc.Status JSON the gateway answers errors with.
type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func decodeStatus(t testing.TB, raw []byte) rpcStatus {
	t.Helper()
	var st rpcStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("error body is not google.rpc.Status JSON: %s", raw)
	}
	return st
}

// TestRESTRejectsBadInputAndStoresNothing covers every bad input of the
// foundation over REST: a 4xx naming the field and no key written.
func TestRESTRejectsBadInputAndStoresNothing(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{"ENDPOINT_ALLOW_HTTP": "false", "ENDPOINT_ALLOWED_CIDRS": ""}})
	acct, key := s.NewAccount("acme")
	keysBefore := storedKeys(t, s)

	cases := []struct {
		name, method, path, token string
		body                      any
		wantCode                  int
		wantIn                    string
	}{
		{"http url", "POST", "/v1/endpoints", key, map[string]any{"url": "http://example.com/hook", "eventTypes": []string{"transcription.completed"}}, 400, "url"},
		{"loopback url", "POST", "/v1/endpoints", key, map[string]any{"url": "https://127.0.0.1/hook", "eventTypes": []string{"transcription.completed"}}, 400, "url"},
		{"private url", "POST", "/v1/endpoints", key, map[string]any{"url": "https://10.1.2.3/hook", "eventTypes": []string{"transcription.completed"}}, 400, "url"},
		{"metadata url", "POST", "/v1/endpoints", key, map[string]any{"url": "https://169.254.169.254/latest", "eventTypes": []string{"transcription.completed"}}, 400, "url"},
		{"cgnat url", "POST", "/v1/endpoints", key, map[string]any{"url": "https://100.64.0.1/", "eventTypes": []string{"transcription.completed"}}, 400, "url"},
		{"unknown event type", "POST", "/v1/endpoints", key, map[string]any{"url": "https://93.184.216.34/hook", "eventTypes": []string{"transcription.exploded"}}, 400, "event_types"},
		{"no event types", "POST", "/v1/endpoints", key, map[string]any{"url": "https://93.184.216.34/hook"}, 400, "event_types"},
		{"bad secret", "POST", "/v1/endpoints", key, map[string]any{"url": "https://93.184.216.34/hook", "eventTypes": []string{"upload.completed"}, "secret": "hunter2"}, 400, "secret"},
		{"no api key", "POST", "/v1/endpoints", "", map[string]any{"url": "https://93.184.216.34/hook", "eventTypes": []string{"upload.completed"}}, 401, "api key"},
		{"wrong api key", "GET", "/v1/endpoints", "vsk_nope", nil, 401, "API key"},
		{"account without admin token", "POST", "/v1/accounts", key, map[string]any{"name": "x"}, 401, "ADMIN_TOKEN"},
		{"event without producer token", "POST", "/v1/events", key, map[string]any{"accountId": acct, "type": "upload.completed", "data": map[string]any{"uploadId": "u", "size": 1, "format": "mp3"}}, 401, "PRODUCER_TOKEN"},
		{"unknown event type publish", "POST", "/v1/events", producerToken, map[string]any{"accountId": acct, "type": "nope", "data": map[string]any{}}, 400, "type"},
		{"missing field", "POST", "/v1/events", producerToken, map[string]any{"accountId": acct, "type": "upload.completed", "data": map[string]any{"uploadId": "u", "size": 1}}, 400, "data.format"},
		{"wrong field type", "POST", "/v1/events", producerToken, map[string]any{"accountId": acct, "type": "transcription.progress", "data": map[string]any{"uploadId": "u", "percentage": "half", "estimate": 3}}, 400, "data.percentage"},
		{"out of range", "POST", "/v1/events", producerToken, map[string]any{"accountId": acct, "type": "transcription.progress", "data": map[string]any{"uploadId": "u", "percentage": 140, "estimate": 3}}, 400, "data.percentage"},
		{"oversize payload", "POST", "/v1/events", producerToken, map[string]any{"accountId": acct, "type": "transcription.completed", "data": map[string]any{"uploadId": "u", "text": strings.Repeat("a", 300<<10), "duration": 1, "credits": 1}}, 400, "data"},
		{"bad batch", "POST", "/v1/events:batchPublish", producerToken, map[string]any{"events": []any{
			map[string]any{"accountId": acct, "type": "upload.completed", "data": map[string]any{"uploadId": "u", "size": 1, "format": "mp3"}},
			map[string]any{"accountId": acct, "type": "upload.completed", "data": map[string]any{"uploadId": "u", "size": -1, "format": "mp3"}},
		}}, 400, "events[1].data.size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, raw := s.Do(c.method, c.path, c.token, c.body, nil)
			if code != c.wantCode {
				t.Fatalf("%s %s = %d, want %d: %s", c.method, c.path, code, c.wantCode, raw)
			}
			st := decodeStatus(t, raw)
			if !strings.Contains(st.Message, c.wantIn) {
				t.Fatalf("message %q does not name %q", st.Message, c.wantIn)
			}
		})
	}
	// Nothing new: keys may only have gone meanwhile (the account's audit
	// entries move to history in the background).
	after := storedKeys(t, s)
	if added := slices.DeleteFunc(after, func(k string) bool { return slices.Contains(keysBefore, k) }); len(added) > 0 {
		t.Fatalf("bad input stored something: new keys %v (before: %v)", added, keysBefore)
	}
}

// storedKeys lists the suite's Redis keys, sorted, leaving out the
// bookkeeping of an API key's use (its rate limiter and last-use time),
// which every authenticated call may write.
func storedKeys(t *testing.T, s *Suite) []string {
	t.Helper()
	keys, err := s.Redis.Client.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	keys = slices.DeleteFunc(keys, func(k string) bool {
		return strings.HasPrefix(k, "wh:apirate:") || strings.HasSuffix(k, ":keys:used")
	})
	slices.Sort(keys)
	return keys
}

// TestAccountsAreIsolated: one account cannot read or change another's
// endpoints, deliveries or events; it gets 404, not 403.
func TestAccountsAreIsolated(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acctA, keyA := s.NewAccount("a")
	_, keyB := s.NewAccount("b")
	ep, _ := s.NewEndpoint(keyA, rc.URL, "upload.completed")
	ing, ctx := s.Ingestion()
	ev := publish(t, ing, ctx, acctA, "upload.completed", map[string]any{"uploadId": "u", "size": 1, "format": "wav"}, "")
	eventually(t, 10*time.Second, "delivery", func() bool { return len(s.deliveries(keyA, "")) == 1 })
	dlv := s.deliveries(keyA, "")[0].ID

	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/endpoints/" + ep.ID},
		{"PATCH", "/v1/endpoints/" + ep.ID},
		{"DELETE", "/v1/endpoints/" + ep.ID},
		{"POST", "/v1/endpoints/" + ep.ID + ":disable"},
		{"POST", "/v1/endpoints/" + ep.ID + ":enable"},
		{"POST", "/v1/endpoints/" + ep.ID + ":rotateSecret"},
		{"POST", "/v1/endpoints/" + ep.ID + ":sendTest"},
		{"GET", "/v1/events/" + ev.GetEvent().GetId()},
		{"GET", "/v1/deliveries/" + dlv},
		{"POST", "/v1/deliveries/" + dlv + ":retry"},
	} {
		var body any
		if c.method == "PATCH" {
			body = map[string]any{"description": "pwned"}
		} else if c.method == "POST" {
			body = map[string]any{}
		}
		code, raw := s.Do(c.method, c.path, keyB, body, nil)
		if code != http.StatusNotFound {
			t.Errorf("B: %s %s = %d, want 404: %s", c.method, c.path, code, raw)
		}
	}
	var list struct {
		Endpoints []Endpoint `json:"endpoints"`
	}
	s.MustDo(200, "GET", "/v1/endpoints", keyB, nil, &list)
	if len(list.Endpoints) != 0 {
		t.Fatalf("B lists A's endpoints: %+v", list)
	}
	if ds := s.deliveries(keyB, ""); len(ds) != 0 {
		t.Fatalf("B lists A's deliveries: %+v", ds)
	}
	var got struct {
		Endpoint struct {
			Description string `json:"description"`
			Status      string `json:"status"`
		} `json:"endpoint"`
	}
	s.MustDo(200, "GET", "/v1/endpoints/"+ep.ID, keyA, nil, &got)
	if got.Endpoint.Description == "pwned" || got.Endpoint.Status != "ENDPOINT_STATUS_ACTIVE" {
		t.Fatalf("A's endpoint changed: %+v", got)
	}
}

// TestEndpointLifecycleOverREST: create, get, list with pagination, update,
// ordering (create, PATCH, a bad value refused), disable (then events are
// not delivered), enable, delete.
func TestEndpointLifecycleOverREST(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	var ids []string
	for i := 0; i < 5; i++ {
		ep, _ := s.NewEndpoint(key, rc.URL+"/"+strconv.Itoa(i), "transcription.failed")
		ids = append(ids, ep.ID)
	}
	var page struct {
		Endpoints     []Endpoint `json:"endpoints"`
		NextPageToken string     `json:"nextPageToken"`
	}
	var seen []string
	token := ""
	for {
		s.MustDo(200, "GET", "/v1/endpoints?pageSize=2&pageToken="+token, key, nil, &page)
		for _, e := range page.Endpoints {
			seen = append(seen, e.ID)
		}
		if page.NextPageToken == "" {
			break
		}
		token, page.NextPageToken = page.NextPageToken, ""
	}
	if strings.Join(seen, ",") != strings.Join(ids, ",") {
		t.Fatalf("pages gave %v, want %v", seen, ids)
	}
	var upd struct{ Endpoint Endpoint }
	s.MustDo(200, "PATCH", "/v1/endpoints/"+ids[0], key, map[string]any{"eventTypes": []string{"transcription.failed", "upload.completed"}}, &upd)
	if len(upd.Endpoint.EventTypes) != 2 || upd.Endpoint.Ordering != "ENDPOINT_ORDERING_UNORDERED" {
		t.Fatalf("PATCH eventTypes: %+v", upd)
	}

	var ord struct{ Endpoint Endpoint }
	s.MustDo(200, "POST", "/v1/endpoints", key, map[string]any{"url": rc.URL + "/ordered", "eventTypes": []string{"credits.low"},
		"ordering": "ENDPOINT_ORDERING_ORDERED_BY_KEY"}, &ord)
	if ord.Endpoint.Ordering != "ENDPOINT_ORDERING_ORDERED_BY_KEY" {
		t.Fatalf("created ordered endpoint: %+v", ord)
	}
	var got struct{ Endpoint Endpoint }
	s.MustDo(200, "GET", "/v1/endpoints/"+ord.Endpoint.ID, key, nil, &got)
	if got.Endpoint.Ordering != "ENDPOINT_ORDERING_ORDERED_BY_KEY" {
		t.Fatalf("GET ordered endpoint: %+v", got)
	}
	s.MustDo(200, "PATCH", "/v1/endpoints/"+ord.Endpoint.ID, key, map[string]any{"ordering": "ENDPOINT_ORDERING_UNORDERED"}, &upd)
	if upd.Endpoint.Ordering != "ENDPOINT_ORDERING_UNORDERED" || len(upd.Endpoint.EventTypes) != 1 {
		t.Fatalf("PATCH ordering: %+v", upd)
	}
	s.MustDo(200, "PATCH", "/v1/endpoints/"+ord.Endpoint.ID+"?updateMask=ordering", key, map[string]any{"ordering": "ENDPOINT_ORDERING_ORDERED_BY_KEY"}, &upd)
	if upd.Endpoint.Ordering != "ENDPOINT_ORDERING_ORDERED_BY_KEY" {
		t.Fatalf("PATCH ?updateMask=ordering: %+v", upd)
	}
	for _, bad := range []any{"ENDPOINT_ORDERING_SOMETIMES", 7} {
		if raw := s.MustDo(400, "PATCH", "/v1/endpoints/"+ord.Endpoint.ID, key, map[string]any{"ordering": bad}, nil); !strings.Contains(string(raw), "ordering") {
			t.Fatalf("PATCH ordering %v: %s does not name the field", bad, raw)
		}
	}
	s.MustDo(200, "DELETE", "/v1/endpoints/"+ord.Endpoint.ID, key, nil, nil)
	for _, id := range ids[1:] {
		s.MustDo(200, "DELETE", "/v1/endpoints/"+id, key, nil, nil)
	}
	s.MustDo(404, "GET", "/v1/endpoints/"+ids[1], key, nil, nil)
	s.MustDo(200, "POST", "/v1/endpoints/"+ids[0]+":disable", key, map[string]any{}, nil)
	ing, ctx := s.Ingestion()
	failed := map[string]any{"uploadId": "u", "error": "bad codec", "errorType": "unsupported_format"}
	publish(t, ing, ctx, acct, "transcription.failed", failed, "")
	time.Sleep(700 * time.Millisecond)
	if rc.Count() != 0 {
		t.Fatalf("an INACTIVE endpoint received %d requests", rc.Count())
	}
	s.MustDo(200, "POST", "/v1/endpoints/"+ids[0]+":enable", key, map[string]any{}, nil)
	publish(t, ing, ctx, acct, "transcription.failed", failed, "")
	eventually(t, 10*time.Second, "delivery after enable", func() bool { return rc.Count() == 1 })
}

// TestGatewayServesHealthOpenAPIAndEventTypes.
func TestGatewayServesHealthOpenAPIAndEventTypes(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	var doc struct {
		Paths map[string]any `json:"paths"`
	}
	s.MustDo(200, "GET", "/openapi.json", "", nil, &doc)
	for _, p := range []string{"/v1/endpoints", "/v1/events", "/v1/deliveries/{id}", "/v1/event-types"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("openapi.json lacks %s", p)
		}
	}
	var types struct {
		EventTypes []struct {
			Name   string         `json:"name"`
			Schema map[string]any `json:"schema"`
		} `json:"eventTypes"`
	}
	s.MustDo(200, "GET", "/v1/event-types", "", nil, &types)
	if len(types.EventTypes) != 10 || types.EventTypes[0].Schema["type"] != "object" {
		t.Fatalf("event types: %+v", types)
	}
	// Health follows the backends: stop ingestion and /healthz turns 503.
	s.mu.Lock()
	ing := s.procs["ingestion"][0]
	s.mu.Unlock()
	s.Kill(ing)
	eventually(t, 10*time.Second, "healthz 503", func() bool {
		resp, err := s.HTTP.Get(s.BaseURL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
}

// TestGRPCPublishNeedsProducerToken.
func TestGRPCPublishNeedsProducerToken(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	acct, _ := s.NewAccount("acme")
	ing, _ := s.Ingestion()
	st, _ := structpb.NewStruct(map[string]any{"uploadId": "u", "engine": "e"})
	_, err := ing.PublishEvent(context.Background(), &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.started", Data: st})
	grpctest.RequireCode(t, err, codes.Unauthenticated) // publish without token
}
