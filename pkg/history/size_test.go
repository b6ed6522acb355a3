package history

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/ids"
)

// TestBytesPerArchivedEvent archives 10,000 events, each with one delivery
// and one attempt, and logs what PostgreSQL spends per event (tables,
// TOAST and indexes: pg_total_relation_size over every partition), beyond
// the empty tables.
func TestBytesPerArchivedEvent(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	sizes := func() map[string]int64 {
		out := map[string]int64{}
		for _, table := range partitioned {
			var n int64
			if err := s.Pool().QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM pg_partition_tree($1)`, table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[table] = n
		}
		return out
	}
	if _, err := s.Pool().Exec(ctx, "VACUUM ANALYZE"); err != nil {
		t.Fatal(err)
	}
	before := sizes()
	const n = 10000
	eps := make([]string, 20)
	for i := range eps {
		eps[i] = ids.New(ids.Endpoint, now)
	}
	var payload int
	for i := 0; i < n; i += 1000 {
		var b Batch
		for j := i; j < i+1000; j++ {
			// Archived in publish order, as the archiver mostly does.
			e := event(acctA, now.Add(-time.Duration(n-j)*time.Second), "transcript.completed", fmt.Sprintf("up_%08d", j))
			e.Payload = []byte(fmt.Sprintf(`{"id":%q,"type":"transcript.completed","createTime":"2026-12-01T11:59:59.123Z","data":{"uploadId":"up_%08d","transcriptId":"tr_%08d","durationSeconds":1834,"language":"en","status":"completed"}}`, e.ID, j, j))
			payload += len(e.Payload)
			b.Events = append(b.Events, e)
			b.Deliveries = append(b.Deliveries, delivery(e, eps[j%len(eps)], StatusSucceeded, 3))
		}
		archive(t, s, b)
	}
	if _, err := s.Pool().Exec(ctx, "VACUUM ANALYZE"); err != nil {
		t.Fatal(err)
	}
	after := sizes()
	var total int64
	var parts []string
	for _, table := range partitioned {
		d := after[table] - before[table]
		total += d
		parts = append(parts, fmt.Sprintf("%s %d", table, d/n))
	}
	if testing.Verbose() {
		rows, err := s.Pool().Query(ctx, `
			SELECT regexp_replace(c.relname, '_p\d{8}', ''), sum(pg_relation_size(c.oid) + coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0))::bigint
			FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
			WHERE c.relkind IN ('r', 'i') GROUP BY 1 ORDER BY 2 DESC`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name string
			var size int64
			_ = rows.Scan(&name, &size)
			t.Logf("  %-45s %6d B/event", name, size/n)
		}
		rows.Close()
	}
	t.Logf("bytes per archived event (event + 1 delivery + 1 attempt, payload %d B): %d total (%s)", payload/n, total/n, strings.Join(parts, ", "))
}
