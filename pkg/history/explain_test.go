package history

import (
	"context"
	"fmt"
	"math/rand"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/ids"
)

// TestEveryFilterIsServedByAnIndex fills history with 20,000 events and
// 30,000 deliveries over the 30 days of retention (two accounts, 40 endpoints, 6 types,
// uploads of ~3 events each, a mix of statuses with parked work), ANALYZEs,
// and EXPLAINs the very SQL each read sends: no sequential scan of an
// events or deliveries partition that holds rows (the empty partitions made
// ahead of time are scanned at cost 0 and read no page).
func TestEveryFilterIsServedByAnIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 50,000 rows")
	}
	rec := &recorder{}
	s := open(t, func(c *Config) { c.Tracer = rec })
	ctx := context.Background()
	rng := rand.New(rand.NewSource(1))
	types := []string{"transcript.completed", "transcript.failed", "upload.received", "upload.processed", "credits.low", "summary.ready"}
	var eps [40]string
	for i := range eps {
		eps[i] = ids.New(ids.Endpoint, now)
	}
	statuses := []Status{StatusSucceeded, StatusSucceeded, StatusSucceeded, StatusSucceeded, StatusSucceeded, StatusSucceeded, StatusFailed, StatusCanceled, StatusParked}
	var b Batch
	var someUpload string
	for i := 0; i < 20000; i++ {
		acct := acctA
		if i%5 == 0 {
			acct = acctB
		}
		upload := fmt.Sprintf("up_%06d", i/3)
		e := event(acct, now.Add(-time.Duration(rng.Int63n(int64(29*day)))), types[rng.Intn(len(types))], upload)
		if i == 9000 {
			someUpload = upload
		}
		b.Events = append(b.Events, e)
		n := 1 + i%2
		for j := 0; j < n; j++ {
			ep := eps[rng.Intn(len(eps)/2)*2+j]
			if acct == acctB {
				ep = eps[39-j]
			}
			b.Deliveries = append(b.Deliveries, delivery(e, ep, statuses[rng.Intn(len(statuses))], 1))
		}
		if len(b.Deliveries) >= 3000 {
			archive(t, s, b)
			b = Batch{}
		}
	}
	archive(t, s, b)
	if _, err := s.Pool().Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM deliveries`); n < 20000 {
		t.Fatalf("only %d deliveries", n)
	}
	dayAgo, twoDaysAgo := now.Add(-day), now.Add(-2*day)
	first, _, _ := s.ListDeliveries(ctx, acctA, DeliveryQuery{PageSize: 100})
	cursor := CursorAt(first[99].ID)
	firstEv, _, _ := s.ListEvents(ctx, acctA, EventQuery{PageSize: 100})
	evCursor := CursorAt(firstEv[99].ID)

	cases := []struct {
		name string
		run  func() error
	}{
		{"deliveries: account", func() error { _, _, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{}); return err }},
		{"deliveries: account, next page", func() error { _, _, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{After: cursor}); return err }},
		{"deliveries: endpoint", func() error { _, _, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{EndpointID: eps[4]}); return err }},
		{"deliveries: status", func() error {
			_, _, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{Statuses: []Status{StatusFailed}})
			return err
		}},
		{"deliveries: two statuses", func() error {
			_, _, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{Statuses: []Status{StatusFailed, StatusCanceled}})
			return err
		}},
		{"deliveries: event type", func() error {
			_, _, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{EventType: "credits.low"})
			return err
		}},
		{"deliveries: upload", func() error {
			_, _, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{UploadID: someUpload})
			return err
		}},
		{"deliveries: since/until", func() error {
			_, _, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{Since: twoDaysAgo, Until: dayAgo})
			return err
		}},
		{"deliveries: endpoint, status, type, window", func() error {
			_, _, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{EndpointID: eps[6], Statuses: []Status{StatusFailed}, EventType: "upload.received", Since: twoDaysAgo, Until: dayAgo})
			return err
		}},
		{"events: account", func() error { _, _, err := s.ListEvents(ctx, acctA, EventQuery{}); return err }},
		{"events: account, next page", func() error { _, _, err := s.ListEvents(ctx, acctA, EventQuery{After: evCursor}); return err }},
		{"events: type", func() error { _, _, err := s.ListEvents(ctx, acctA, EventQuery{Type: "summary.ready"}); return err }},
		{"events: upload", func() error { _, _, err := s.ListEvents(ctx, acctA, EventQuery{UploadID: someUpload}); return err }},
		{"events: since/until", func() error {
			_, _, err := s.ListEvents(ctx, acctA, EventQuery{Since: twoDaysAgo, Until: dayAgo})
			return err
		}},
		{"replay: failed and parked since", func() error {
			_, err := s.FindForReplay(ctx, acctA, eps[8], []Status{StatusFailed, StatusParked}, twoDaysAgo, 10000)
			return err
		}},
		{"parked: take in publish order", func() error { _, _, err := s.TakeParked(ctx, eps[10], "", 500); return err }},
		{"get delivery", func() error { _, _, err := s.GetDelivery(ctx, acctA, first[3].ID); return err }},
	}
	empty := map[string]bool{}
	rows, err := s.Pool().Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
		WHERE i.inhparent IN ('events'::regclass, 'deliveries'::regclass) AND c.reltuples = 0`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		empty[n] = true
	}
	rows.Close()
	t.Logf("empty partitions (ahead of time): %d", len(empty))
	seq := regexp.MustCompile(`Seq Scan on ((events|deliveries)_p\d+)`)
	for _, c := range cases {
		rec.take()
		if err := c.run(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		names := map[string]bool{}
		for _, q := range rec.take() {
			rows, err := s.Pool().Query(ctx, "EXPLAIN "+q.sql, q.args...)
			if err != nil {
				t.Fatalf("%s: explain: %v", c.name, err)
			}
			var plan []string
			for rows.Next() {
				var line string
				_ = rows.Scan(&line)
				plan = append(plan, line)
			}
			rows.Close()
			text := strings.Join(plan, "\n")
			bad := ""
			for _, m := range seq.FindAllStringSubmatch(text, -1) {
				if !empty[m[1]] {
					bad = m[1]
				}
			}
			if bad != "" || !strings.Contains(text, "Index") {
				t.Errorf("%s: not served by an index (seq scan of %s):\n%s\n%s", c.name, bad, q.sql, text)
				continue
			}
			for _, m := range idxName.FindAllStringSubmatch(text, -1) {
				names[partSuffix.ReplaceAllString(m[1], "${1}.")] = true
			}
		}
		t.Logf("%-45s %v", c.name, keys(names))
	}
}

var (
	idxName    = regexp.MustCompile(`(?:using|Index Scan on) (\w+)`)
	partSuffix = regexp.MustCompile(`^(\w+?)_p\d{8}_`)
)

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
