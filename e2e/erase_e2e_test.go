package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/ids"
)

// TestEraseLeavesNothingOfTheAccountInRedisOrPostgreSQL: an account with
// every kind of data (two keys; an endpoint whose deliveries succeeded and
// moved to history; one whose deliveries keep failing, so they are pending
// retries when it is erased; one disabled by a 410 with parked work;
// idempotency keys, a credit-balance report, a manual retry, audit entries)
// is erased with DELETE /v1/accounts/{id}. Afterwards its keys are refused,
// the failing receiver hears nothing more (pending deliveries were
// canceled), and no Redis key (name or value) and no PostgreSQL row holds
// any of its ids or its payloads' marker, while a second account is
// untouched. A repeat answers 404.
func TestEraseLeavesNothingOfTheAccountInRedisOrPostgreSQL(t *testing.T) {
	dbURL := historyDatabase(t)
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DATABASE_URL": dbURL,
		// Failing deliveries retry every 2 s (and their endpoint is
		// disabled only after 20 failures): pending when the account goes.
		"DELIVERY_RETRY_SCHEDULE": "0s" + strings.Repeat(",2s", 19),
		"PARKED_MOVE_AFTER":       "1s",
	}})
	marker := "erase-me-" + strings.ToLower(ids.New("", time.Now()))

	acct, key := s.NewAccount("leaving")
	keep, keepKey := s.NewAccount("staying")
	_, key2 := s.newKey(key, "second")

	ok, failing, gone := newReceiver(), newReceiver(), newReceiver()
	defer ok.Close()
	defer failing.Close()
	defer gone.Close()
	failing.Respond = func(int, *http.Request) int { return 500 }
	gone.Respond = func(int, *http.Request) int { return 410 }
	epOK, _ := s.NewEndpoint(key, ok.URL+"/ok", "upload.completed")
	epFail, _ := s.NewEndpoint(key2, failing.URL+"/fail", "upload.completed")
	epGone, _ := s.NewEndpoint(key, gone.URL+"/gone", "upload.completed")
	s.MustDo(200, "PATCH", "/v1/settings", key, map[string]any{"creditsLowThreshold": 10}, nil)
	keepRC := newReceiver()
	defer keepRC.Close()
	s.NewEndpoint(keepKey, keepRC.URL+"/keep", "upload.completed")

	var evIDs []string
	publish := func(account, idem string) {
		t.Helper()
		var pub struct {
			Event struct{ ID string } `json:"event"`
		}
		upload := "kept-" + idem
		if account == acct {
			upload = marker + "-" + idem // only the erased account's payloads carry it
		}
		s.MustDo(200, "POST", "/v1/events", producerToken, map[string]any{
			"accountId": account, "type": "upload.completed", "idempotencyKey": idem,
			"data": map[string]any{"uploadId": upload, "size": 1, "format": "mp3"},
		}, &pub)
		if account == acct {
			evIDs = append(evIDs, pub.Event.ID)
		}
	}
	for i := range 5 {
		publish(acct, fmt.Sprint("a-", i))
		publish(keep, fmt.Sprint("k-", i))
	}
	s.MustDo(200, "POST", "/v1/accounts/"+acct+":reportCreditBalance", producerToken, map[string]any{"balance": 5}, nil)
	eventually(t, 15*time.Second, "the 410 endpoint disabled", func() bool {
		var ep struct {
			Endpoint Endpoint `json:"endpoint"`
		}
		s.MustDo(200, "GET", "/v1/endpoints/"+epGone.ID, key, nil, &ep)
		return ep.Endpoint.Status == "ENDPOINT_STATUS_DISABLED"
	})
	publish(acct, "a-parked") // parked for the disabled endpoint
	eventually(t, 15*time.Second, "the successful deliveries in history", func() bool {
		return ok.Count() >= 6 && countRows(t, dbURL, "SELECT count(*) FROM deliveries WHERE account_id = $1::uuid", uuidOf(t, acct)) >= 6
	})
	// A manual retry of a failing delivery (audited).
	var list struct {
		Deliveries []struct{ ID string } `json:"deliveries"`
	}
	s.MustDo(200, "GET", "/v1/deliveries?endpointId="+epFail.ID, key, nil, &list)
	if len(list.Deliveries) == 0 {
		t.Fatal("no deliveries to the failing endpoint")
	}
	s.MustDo(200, "POST", "/v1/deliveries/"+list.Deliveries[0].ID+":retry", key, nil, nil)
	eventually(t, 15*time.Second, "the audit log in history", func() bool {
		return countRows(t, dbURL, "SELECT count(*) FROM audit_log WHERE account_id = $1::uuid", uuidOf(t, acct)) > 0
	})

	// Every id of the account, to look for afterwards.
	var dlvIDs []string
	for _, ep := range []string{epOK.ID, epFail.ID, epGone.ID} {
		for _, ev := range evIDs {
			dlvIDs = append(dlvIDs, ids.Derive(ids.Delivery, ev, ep))
		}
	}
	needles := append([]string{acct, epOK.ID, epFail.ID, epGone.ID, marker}, evIDs...)
	keyList, _ := s.listKeys(key)
	for _, k := range keyList {
		needles = append(needles, k.ID, k.Prefix)
	}
	if failing.Count() == 0 || len(dlvIDs) == 0 {
		t.Fatal("nothing pending at the failing endpoint")
	}
	if leftInRedis(t, s.Redis.Client, append(needles, dlvIDs...)) == "" {
		t.Fatal("the account has nothing in Redis before the erasure: the check below would prove nothing")
	}
	if leftInPostgres(t, dbURL, acct, needles) == "" {
		t.Fatal("the account has nothing in PostgreSQL before the erasure: the check below would prove nothing")
	}

	s.MustDo(401, "DELETE", "/v1/accounts/"+acct, key, nil, nil) // a customer key is not the admin's
	start := time.Now()
	s.MustDo(200, "DELETE", "/v1/accounts/"+acct, adminToken, nil, nil)
	t.Logf("erased in %s", time.Since(start).Round(time.Millisecond))
	heard := failing.Count()

	for _, k := range []string{key, key2} {
		if code, raw := s.Do("GET", "/v1/endpoints", k, nil, nil); code != 401 {
			t.Errorf("a key of the erased account answered %d: %s", code, raw)
		}
	}
	s.MustDo(404, "DELETE", "/v1/accounts/"+acct, adminToken, nil, nil)
	if left := leftInRedis(t, s.Redis.Client, append(needles, dlvIDs...)); left != "" {
		t.Errorf("Redis still holds the account's data:\n%s", left)
	}
	if left := leftInPostgres(t, dbURL, acct, append(needles, dlvIDs...)); left != "" {
		t.Errorf("PostgreSQL still holds the account's data:\n%s", left)
	}
	time.Sleep(5 * time.Second) // two retry intervals
	if n := failing.Count(); n != heard {
		t.Errorf("the failing endpoint heard %d more requests after the erasure", n-heard)
	}
	if left := leftInRedis(t, s.Redis.Client, append(needles, dlvIDs...)); left != "" {
		t.Errorf("Redis holds the account's data again 5 s after the erasure:\n%s", left)
	}

	// The other account is untouched.
	var evs struct {
		Events []struct{ ID string } `json:"events"`
	}
	s.MustDo(200, "GET", "/v1/events", keepKey, nil, &evs)
	if len(evs.Events) != 5 {
		t.Errorf("the other account lists %d events, want 5", len(evs.Events))
	}
	if keepRC.Count() != 5 {
		t.Errorf("the other account's receiver got %d requests, want 5", keepRC.Count())
	}
	publish(keep, "k-after")
	eventually(t, 10*time.Second, "the other account still delivered to", func() bool { return keepRC.Count() == 6 })
}

// uuidOf is the uuid (standard text form) an id is stored as in history.
func uuidOf(t testing.TB, id string) string {
	t.Helper()
	_, rest, _ := strings.Cut(id, "_")
	b, ok := ids.Bytes(id[:len(id)-len(rest)], id)
	if !ok {
		t.Fatalf("not an id: %s", id)
	}
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func countRows(t *testing.T, dbURL, q string, args ...any) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// leftInRedis lists the keys whose name or value holds any needle.
func leftInRedis(t *testing.T, rdb *redis.Client, needles []string) string {
	t.Helper()
	ctx := context.Background()
	var out []string
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		var content string
		switch rdb.Type(ctx, k).Val() {
		case "string":
			content = rdb.Get(ctx, k).Val()
		case "hash":
			content = fmt.Sprint(rdb.HGetAll(ctx, k).Val())
		case "set":
			content = fmt.Sprint(rdb.SMembers(ctx, k).Val())
		case "zset":
			content = fmt.Sprint(rdb.ZRange(ctx, k, 0, -1).Val())
		case "list":
			content = fmt.Sprint(rdb.LRange(ctx, k, 0, -1).Val())
		}
		for _, n := range needles {
			if strings.Contains(k, n) || strings.Contains(content, n) {
				out = append(out, fmt.Sprintf("  %s (holds %s)", k, n))
				break
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

// leftInPostgres lists, per table, the rows whose text (uuids in their
// standard form, byteas in hex) holds any needle; erased_accounts may hold
// the account's id alone.
func leftInPostgres(t *testing.T, dbURL, acct string, needles []string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var patterns []string
	for _, n := range needles {
		patterns = append(patterns, "%"+n+"%", `%`+hex.EncodeToString([]byte(n))+`%`)
		if _, rest, ok := strings.Cut(n, "_"); ok && len(rest) == 26 {
			patterns = append(patterns, "%"+uuidOf(t, n)+"%")
		}
	}
	rows, err := conn.Query(ctx, `SELECT c.relname FROM pg_class c
		WHERE c.relnamespace = to_regnamespace(current_schema())::oid AND c.relkind IN ('r', 'p') AND NOT c.relispartition`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, table := range tables {
		var n int
		if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s x WHERE x::text LIKE ANY($1)`, pgx.Identifier{table}.Sanitize()), patterns).Scan(&n); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if table == "erased_accounts" {
			var total int
			_ = conn.QueryRow(ctx, `SELECT count(*) FROM erased_accounts WHERE account_id <> $1::uuid`, uuidOf(t, acct)).Scan(&total)
			if n != 1 || total != 0 {
				out = append(out, fmt.Sprintf("  erased_accounts: %d rows of the account, %d others", n, total))
			}
			continue
		}
		if n > 0 {
			out = append(out, fmt.Sprintf("  %s: %d rows", table, n))
		}
	}
	if len(tables) < 6 {
		t.Fatalf("only %d tables found: %v", len(tables), tables)
	}
	return strings.Join(out, "\n")
}

// TestAnInterruptedErasureIsFinishedByTheNextCall: with delivery down, the
// erasure answers 503 naming the step, yet the account's key is already
// refused; once delivery is back the same call finishes it, and nothing of
// the account is left in Redis.
func TestAnInterruptedErasureIsFinishedByTheNextCall(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	acct, key := s.NewAccount("interrupted")
	rc := newReceiver()
	defer rc.Close()
	ep, _ := s.NewEndpoint(key, rc.URL+"/x", "upload.completed")
	var pub struct {
		Event struct{ ID string } `json:"event"`
	}
	s.MustDo(200, "POST", "/v1/events", producerToken, map[string]any{
		"accountId": acct, "type": "upload.completed", "data": map[string]any{"uploadId": "upl_1", "size": 1, "format": "mp3"},
	}, &pub)
	eventually(t, 10*time.Second, "delivered", func() bool { return rc.Count() == 1 })

	s.mu.Lock()
	victim := s.procs["delivery"][0]
	s.mu.Unlock()
	s.Kill(victim)
	start := time.Now()
	code, raw := s.Do("DELETE", "/v1/accounts/"+acct, adminToken, nil, nil)
	if code != 503 || !strings.Contains(string(raw), "deliveries") || !strings.Contains(string(raw), "call DeleteAccount again") {
		t.Fatalf("erasure with delivery down = %d %s; want 503 naming the step", code, raw)
	}
	t.Logf("503 after %s (the registry waits up to 5 s for a restarting peer)", time.Since(start).Round(time.Millisecond))
	if code, raw := s.Do("GET", "/v1/endpoints", key, nil, nil); code != 401 {
		t.Fatalf("the key of an account being erased answered %d: %s", code, raw)
	}
	s.Start("delivery", nil)
	s.WaitHealthy(30 * time.Second)
	s.MustDo(200, "DELETE", "/v1/accounts/"+acct, adminToken, nil, nil)
	dlv := ids.Derive(ids.Delivery, pub.Event.ID, ep.ID)
	if left := leftInRedis(t, s.Redis.Client, []string{acct, ep.ID, pub.Event.ID, dlv}); left != "" {
		t.Errorf("Redis still holds the account's data:\n%s", left)
	}
	s.MustDo(404, "DELETE", "/v1/accounts/"+acct, adminToken, nil, nil)
}
