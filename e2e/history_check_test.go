package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/shard"
)

// Checks shared by the chaos and history-outage tests: what Redis still
// holds of ended work, and that every delivery is listed once over REST
// with its whole history.

// archiveBacklog is the number of ended deliveries waiting in Redis to
// move to history (the ZCARDs of wh:ended:{s<n>}, what the gauge
// webhook_archive_backlog counts once due), in one round trip: cheap
// enough to poll during a benchmark (KEYS would walk the whole keyspace).
func archiveBacklog(t testing.TB, s *Suite) int64 {
	t.Helper()
	ctx := context.Background()
	cards := make([]*redis.IntCmd, shard.Count)
	if _, err := s.Redis.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n := range cards {
			cards[n] = p.ZCard(ctx, fmt.Sprintf("wh:ended:{s%d}", n))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range cards {
		n += c.Val()
	}
	return n
}

// waitArchived waits until Redis holds no ended delivery (the backlog is
// empty) and no delivery or event record at all: every delivery of the
// test ended, so all of it belongs in PostgreSQL.
func waitArchived(t testing.TB, s *Suite, d time.Duration) {
	t.Helper()
	var backlog int64
	var left int
	deadline := time.Now().Add(d)
	for {
		backlog, left = archiveBacklog(t, s), redisHistoryKeys(t, s)
		if backlog == 0 && left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v Redis still holds %d ended deliveries to archive and %d delivery/attempt/event records, e.g.\n%s", d, backlog, left, leftovers(s, 5))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// listAllDeliveries pages GET /v1/deliveries to the end (pageSize 100)
// and fails t if a delivery is listed twice.
func listAllDeliveries(t testing.TB, s *Suite, key string) []delivery {
	t.Helper()
	var all []delivery
	seen := map[string]int{}
	token := ""
	for page := 0; ; page++ {
		var out struct {
			Deliveries    []delivery `json:"deliveries"`
			NextPageToken string     `json:"nextPageToken"`
		}
		s.MustDo(200, "GET", "/v1/deliveries?pageSize=100&pageToken="+token, key, nil, &out)
		for _, d := range out.Deliveries {
			if p, ok := seen[d.ID]; ok {
				t.Fatalf("delivery %s listed twice (pages %d and %d)", d.ID, p, page)
			}
			seen[d.ID] = page
		}
		all = append(all, out.Deliveries...)
		if out.NextPageToken == "" {
			return all
		}
		token = out.NextPageToken
	}
}

// historyComplete checks one delivery read by id: SUCCEEDED, with the
// body it sent (read from history once its event left Redis), its attempt
// log as long as its attempt count, numbered upwards, the last a 200.
// It returns how many of its attempts were answered 200.
func historyComplete(d delivery) (int, error) {
	if !strings.HasSuffix(d.Status, "SUCCEEDED") {
		return 0, fmt.Errorf("status %s, want SUCCEEDED", d.Status)
	}
	if d.Payload == "" {
		return 0, fmt.Errorf("no payload")
	}
	if len(d.Attempts) == 0 || len(d.Attempts) != d.AttemptCount {
		return 0, fmt.Errorf("%d attempts in its log, attempt count %d", len(d.Attempts), d.AttemptCount)
	}
	ok := 0
	for i, a := range d.Attempts {
		if i > 0 && a.Number <= d.Attempts[i-1].Number {
			return 0, fmt.Errorf("attempt numbers out of order: %d after %d", a.Number, d.Attempts[i-1].Number)
		}
		if a.StatusCode == 200 {
			ok++
		}
	}
	if last := d.Attempts[len(d.Attempts)-1]; last.StatusCode != 200 {
		return 0, fmt.Errorf("last attempt (#%d) answered %d, want 200", last.Number, last.StatusCode)
	}
	return ok, nil
}

// parallelGET runs GET path(id) for every id on 4 connections and returns
// the answers that were not 200; read, when set, gets each 200's body.
func parallelGET(t testing.TB, s *Suite, key string, idList []string, path func(string) string, read func(id string, raw []byte)) []string {
	t.Helper()
	var mu sync.Mutex
	var bad []string
	work := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				code, raw, err := s.try("GET", path(id), key)
				if err == nil && code == http.StatusOK && read != nil {
					read(id, raw)
				}
				if err != nil || code != http.StatusOK {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %d %v %.200s", id, code, err, raw))
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range idList {
		work <- id
	}
	close(work)
	wg.Wait()
	return bad
}

// try is Do without a body that never fails the test: for goroutines and
// for calls expected to fail while services or PostgreSQL are down.
func (s *Suite) try(method, path, token string) (int, []byte, error) {
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequest(method, s.BaseURL+path, body)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// leftovers describes up to n of the delivery and event records Redis
// still holds (key, type, fields).
func leftovers(s *Suite, n int) string {
	ctx := context.Background()
	var b strings.Builder
	for _, pat := range []string{"wh:dlv:*", "wh:evt:*"} {
		keys, _ := s.Redis.Client.Keys(ctx, pat).Result()
		fmt.Fprintf(&b, "%d keys %s\n", len(keys), pat)
		for i, k := range keys {
			if i == n {
				break
			}
			typ, _ := s.Redis.Client.Type(ctx, k).Result()
			if typ == "hash" {
				m, _ := s.Redis.Client.HGetAll(ctx, k).Result()
				delete(m, "payload")
				delete(m, "body")
				fmt.Fprintf(&b, "  %s %v\n", k, m)
			} else {
				fmt.Fprintf(&b, "  %s (%s)\n", k, typ)
			}
		}
	}
	return b.String()
}

// incompleteHistories reads each delivery by id (GET /v1/deliveries/{id})
// and returns the reads that failed and, for the others, what
// historyComplete found wrong ("id (event e): reason"). complete, when
// set, gets each complete history's count of successful attempts.
func incompleteHistories(t testing.TB, s *Suite, key string, idList []string, complete func(oks int)) (bad, incomplete []string) {
	t.Helper()
	var mu sync.Mutex
	bad = parallelGET(t, s, key, idList, func(id string) string { return "/v1/deliveries/" + id }, func(id string, raw []byte) {
		var out struct {
			Delivery delivery `json:"delivery"`
		}
		err := json.Unmarshal(raw, &out)
		oks := 0
		if err == nil {
			oks, err = historyComplete(out.Delivery)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			incomplete = append(incomplete, fmt.Sprintf("%s (event %s): %v", id, out.Delivery.EventID, err))
		case complete != nil:
			complete(oks)
		}
	})
	return bad, incomplete
}
