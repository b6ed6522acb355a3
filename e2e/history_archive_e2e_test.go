package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// redisHistoryKeys counts the delivery, attempt and event records Redis
// still holds.
func redisHistoryKeys(t testing.TB, s *Suite) int {
	t.Helper()
	n := 0
	for _, pat := range []string{"wh:dlv:*", "wh:evt:*"} {
		keys, err := s.Redis.Client.Keys(context.Background(), pat).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += len(keys)
	}
	return n
}

// TestDeliveredHistoryLeavesRedisAndStaysReadable: after N deliveries
// Redis holds none of their delivery, attempt or event records, and every
// one is readable with its attempts through the delivery API (from
// PostgreSQL). It logs Redis's bytes per delivered event after archival.
func TestDeliveredHistoryLeavesRedisAndStaysReadable(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	s.NewEndpoint(key, rc.URL+"/hook", "transcription.completed")
	ing, ctx := s.Ingestion()
	before, _ := s.Redis.Client.Info(context.Background(), "memory").Result()
	const n = 300
	for i := 0; i < n; i++ {
		publish(t, ing, ctx, acct, "transcription.completed", completed(fmt.Sprintf("upl_%d", i)), "")
	}
	eventually(t, 60*time.Second, "every webhook", func() bool { return rc.Count() >= n })
	eventually(t, 30*time.Second, "Redis to hold no delivery or event record", func() bool { return redisHistoryKeys(t, s) == 0 })
	after, _ := s.Redis.Client.Info(context.Background(), "memory").Result()
	t.Logf("Redis used_memory before %d B, after %d deliveries archived %d B (%.1f B per delivered event)",
		usedMemory(before), n, usedMemory(after), float64(usedMemory(after)-usedMemory(before))/n)
	var all []delivery
	token := ""
	for {
		var out struct {
			Deliveries    []delivery `json:"deliveries"`
			NextPageToken string     `json:"nextPageToken"`
		}
		s.MustDo(200, "GET", "/v1/deliveries?pageSize=100&pageToken="+token, key, nil, &out)
		all = append(all, out.Deliveries...)
		if out.NextPageToken == "" {
			break
		}
		token = out.NextPageToken
	}
	if len(all) != n {
		t.Fatalf("ListDeliveries listed %d, want %d", len(all), n)
	}
	seen := map[string]bool{}
	for _, d := range all {
		if seen[d.ID] {
			t.Fatalf("%s listed twice", d.ID)
		}
		seen[d.ID] = true
	}
	for _, d := range all[:20] {
		got := s.delivery(key, d.ID)
		if got.Status != "DELIVERY_STATUS_SUCCEEDED" && !strings.HasSuffix(got.Status, "SUCCEEDED") || len(got.Attempts) != 1 || got.Attempts[0].StatusCode != 200 || got.Payload == "" {
			t.Fatalf("GetDelivery(%s) from history = %+v", d.ID, got)
		}
	}
}

func usedMemory(info string) int64 {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}
