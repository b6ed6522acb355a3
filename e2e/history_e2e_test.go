package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

// TestArchivedEventsThroughTheGateway: an event moved to PostgreSQL (as the
// archiver moves it) is still found by id and by uploadId over REST, a
// repeat of its idempotency key returns it, the stats endpoint counts its
// archived attempt, and /healthz reports the history store reachable.
func TestArchivedEventsThroughTheGateway(t *testing.T) {
	dbURL := historyDatabase(t)
	s := startSuite(t, SuiteOptions{Env: map[string]string{"DATABASE_URL": dbURL}})
	store, err := history.Open(t.Context(), dbURL, history.Config{Retention: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	acct, key := s.NewAccount("history")
	rc := newReceiver()
	defer rc.Close()
	ep, _ := s.NewEndpoint(key, rc.URL+"/webhook", "upload.completed")

	var pub struct {
		Event struct {
			ID, Payload string
		} `json:"event"`
		Duplicate bool `json:"duplicate"`
	}
	publish := func(size int) {
		t.Helper()
		s.MustDo(200, "POST", "/v1/events", producerToken, map[string]any{
			"accountId": acct, "type": "upload.completed", "idempotencyKey": "upload-77",
			"data": map[string]any{"uploadId": "upl_77", "size": size, "format": "mp3"},
		}, &pub)
	}
	publish(1000)
	original := pub.Event
	eventually(t, 10*time.Second, "delivered", func() bool { return len(rc.Requests()) == 1 })
	if err := archiveEvent(t.Context(), s, store, eventstore.New(s.Redis.Client, time.Hour), original.ID, ep.ID); err != nil {
		t.Fatal(err)
	}

	var got struct {
		Event struct{ ID, Payload string } `json:"event"`
	}
	s.MustDo(200, "GET", "/v1/events/"+original.ID, key, nil, &got)
	if got.Event.Payload != original.Payload {
		t.Errorf("archived event reads %q, published %q", got.Event.Payload, original.Payload)
	}
	var list struct {
		Events []struct{ ID string } `json:"events"`
	}
	s.MustDo(200, "GET", "/v1/events?uploadId=upl_77", key, nil, &list)
	if len(list.Events) != 1 || list.Events[0].ID != original.ID {
		t.Errorf("search by uploadId: %+v", list.Events)
	}
	publish(2000)
	if !pub.Duplicate || pub.Event.ID != original.ID || pub.Event.Payload != original.Payload {
		t.Errorf("repeat of an archived event: duplicate %t, %s %s", pub.Duplicate, pub.Event.ID, pub.Event.Payload)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(rc.Requests()); n != 1 {
		t.Errorf("the repeat was delivered again: %d requests", n)
	}

	var stats struct {
		Points []struct {
			Succeeded    string  `json:"succeeded"`
			LatencyP50Ms float64 `json:"latencyP50Ms"`
		} `json:"points"`
	}
	s.MustDo(200, "GET", "/v1/stats/deliveries?endpointId="+ep.ID, key, nil, &stats)
	ok := 0
	for _, p := range stats.Points {
		if p.Succeeded == "1" && p.LatencyP50Ms > 0 {
			ok++
		}
	}
	if len(stats.Points) < 24*60 || ok != 1 {
		t.Errorf("stats: %d points, %d with the archived attempt", len(stats.Points), ok)
	}

	eventually(t, 10*time.Second, "historyStore reachable", func() bool {
		resp, err := s.HTTP.Get(s.BaseURL + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var h map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&h)
		return resp.StatusCode == http.StatusOK && h["historyStore"] == "reachable" && h["status"] == "ok"
	})
}

// TestHistoryStoreDownKeepsTheSuiteHealthy: with PostgreSQL unreachable
// from the start, the suite starts, /healthz answers 200 naming the
// history store unreachable, publishing and live reads go on, and event
// listings answer 503 with the store's message.
func TestHistoryStoreDownKeepsTheSuiteHealthy(t *testing.T) {
	down := "postgres://postgres@127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) + "/webhooks?connect_timeout=1"
	s := startSuite(t, SuiteOptions{Env: map[string]string{"DATABASE_URL": down}, HistoryDown: true})
	acct, key := s.NewAccount("nopg")
	var pub struct {
		Event struct{ ID string } `json:"event"`
	}
	s.MustDo(200, "POST", "/v1/events", producerToken, map[string]any{
		"accountId": acct, "type": "upload.completed", "data": map[string]any{"uploadId": "upl_1", "size": 1, "format": "wav"},
	}, &pub)
	s.MustDo(200, "GET", "/v1/events/"+pub.Event.ID, key, nil, nil)
	code, body := s.Do("GET", "/v1/events", key, nil, nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "history store unreachable") {
		t.Errorf("list with PostgreSQL down: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "historyStore unreachable in /healthz", func() bool {
		resp, err := s.HTTP.Get(s.BaseURL + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var h map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&h)
		st, _ := h["historyStore"].(string)
		return resp.StatusCode == http.StatusOK && strings.HasPrefix(st, "unreachable: ")
	})
}
