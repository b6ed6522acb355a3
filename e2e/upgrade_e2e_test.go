package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
)

// preHistoryRev is the last build before the history tier (issue #12): the
// parent of "delivery: a version on every delivery write and a per-shard
// index of ended deliveries". Its Redis layout: delivery hashes without
// `ver`, no wh:ended index, ended deliveries, their attempts and events
// kept in Redis with DELIVERY_RETENTION, account indexes scored by create
// time, idempotency markers as wh:{a:<acct>}:idem:<key> strings.
const preHistoryRev = "9d9bb4c~1"

// buildRevision builds the four services of git revision rev (a detached
// worktree of this repository, removed afterwards) and returns the
// directory of the binaries. A shallow clone is deepened until it holds rev.
func buildRevision(t testing.TB, rev string) string {
	t.Helper()
	git := func(dir string, args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := git(wd, "rev-parse", "--show-toplevel")
	if err != nil {
		t.Fatalf("the upgrade test builds %s from this repository's history, but git cannot find it: %v: %s", rev, err, root)
	}
	has := func() bool {
		_, err := git(root, "rev-parse", "--verify", "--quiet", rev+"^{commit}")
		return err == nil
	}
	for i := 0; !has() && i < 5; i++ {
		if sh, _ := git(root, "rev-parse", "--is-shallow-repository"); sh != "true" {
			break
		}
		t.Logf("shallow clone without %s: git fetch --deepen=200", rev)
		if out, err := git(root, "fetch", "--quiet", "--deepen=200"); err != nil {
			t.Fatalf("git fetch --deepen=200: %v: %s", err, out)
		}
	}
	if !has() {
		t.Fatalf("this clone does not hold %s (the build before the history tier) even after deepening: run git fetch --unshallow", rev)
	}
	src := filepath.Join(t.TempDir(), "src")
	if out, err := git(root, "worktree", "add", "--detach", src, rev); err != nil {
		t.Fatalf("git worktree add %s: %v: %s", rev, err, out)
	}
	t.Cleanup(func() {
		if out, err := git(root, "worktree", "remove", "--force", src); err != nil {
			t.Logf("git worktree remove %s: %v: %s", src, err, out)
		}
	})
	bin := t.TempDir()
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin+"/",
		"./services/registry/cmd/registry", "./services/ingestion/cmd/ingestion",
		"./services/delivery/cmd/delivery", "./services/gateway/cmd/gateway")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(src, "go.work"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", rev, err, out)
	}
	t.Logf("built %s in %v", rev, time.Since(start).Round(time.Millisecond))
	return bin
}

// TestUpgradeFromThePreHistoryLayoutLosesNothing (issue #12 item 4): the
// build before the history tier writes its Redis layout (delivered
// history, pending retries, parked deliveries of a disabled endpoint,
// idempotency markers); the current build, started in place on the same
// Redis with a fresh PostgreSQL, reads all of it, moves the ended and
// parked work to history, continues the retries, resumes the parked work
// on re-enable and honours the old idempotency keys, delivering nothing
// twice.
func TestUpgradeFromThePreHistoryLayoutLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous version of the suite")
	}
	oldBin := buildRevision(t, preHistoryRev)
	r := redistest.Start(t, redistest.Options{AOF: true})
	const schedule = "0s,10s,10s,10s,10s" // a retry due after the upgrade

	var (
		failOK atomic.Bool // the failing endpoint answers 200 once set
		goneOK atomic.Bool // the 410 endpoint answers 200 once set
	)
	okRc, failRc, goneRc := newReceiver(), newReceiver(), newReceiver()
	defer okRc.Close()
	defer failRc.Close()
	defer goneRc.Close()
	failRc.Respond = func(int, *http.Request) int {
		if failOK.Load() {
			return 200
		}
		return 500
	}
	goneRc.Respond = func(int, *http.Request) int {
		if goneOK.Load() {
			return 200
		}
		return http.StatusGone
	}

	// The old version: account, endpoints, events with idempotency keys.
	old := startSuiteOn(t, r, SuiteOptions{BinDir: oldBin, HistoryDown: true,
		Env: map[string]string{"DELIVERY_RETRY_SCHEDULE": schedule}})
	acct, key := old.NewAccount("acme")
	old.NewEndpoint(key, okRc.URL+"/ok", "transcription.completed", "transcription.started")
	failEp, _ := old.NewEndpoint(key, failRc.URL+"/fail", "transcription.started")
	goneEp, _ := old.NewEndpoint(key, goneRc.URL+"/gone", "upload.completed")
	ing, ctx := old.Ingestion()
	type published struct{ id, idem, typ string }
	var events []published
	pub := func(typ string, data map[string]any) {
		idem := fmt.Sprintf("idem-%d", len(events))
		ev := publish(t, ing, ctx, acct, typ, data, idem).GetEvent().GetId()
		events = append(events, published{ev, idem, typ})
	}
	const nCompleted, nStarted, nUpload = 10, 5, 5
	for i := range nCompleted {
		pub("transcription.completed", completed(fmt.Sprintf("upl_c%d", i)))
	}
	for i := range nStarted {
		pub("transcription.started", map[string]any{"uploadId": fmt.Sprintf("upl_s%d", i), "engine": "whisper"})
	}
	upload := func(i int) map[string]any {
		return map[string]any{"uploadId": fmt.Sprintf("upl_u%d", i), "size": 1000 + i, "format": "mp3"}
	}
	pub("upload.completed", upload(0)) // answered 410: the endpoint is disabled
	eventually(t, 20*time.Second, "the 410 endpoint DISABLED by the old version", func() bool {
		var out struct{ Endpoint Endpoint }
		old.MustDo(200, "GET", "/v1/endpoints/"+goneEp.ID, key, nil, &out)
		return strings.HasSuffix(out.Endpoint.Status, "DISABLED")
	})
	for i := 1; i < nUpload; i++ {
		pub("upload.completed", upload(i)) // parked for it
	}
	wantDeliveries := nCompleted + 2*nStarted + nUpload
	byStatus := func(s *Suite) map[string]int {
		m := map[string]int{}
		for _, d := range listAllDeliveries(t, s, key) {
			m[strings.TrimPrefix(d.Status, "DELIVERY_STATUS_")]++
		}
		return m
	}
	eventually(t, 20*time.Second, "the old version's deliveries settled", func() bool {
		m := byStatus(old)
		return m["SUCCEEDED"] == nCompleted+nStarted && m["PARKED"] == nUpload && m["PENDING"] == nStarted &&
			failRc.Count() == nStarted
	})
	old.StopAll() // SIGTERM: the upgrade in place
	t.Logf("old layout written: %d events, %d deliveries; keys: %s", len(events), wantDeliveries, keyCensus(t, r))
	if n, _ := r.Client.Exists(context.Background(), "wh:ended:{s0}").Result(); n != 0 {
		t.Fatal("the old version wrote wh:ended: not the pre-history layout")
	}

	// The new version on the same Redis, a fresh PostgreSQL. The failing
	// endpoint recovers; its retries are due 10 s after their first try.
	failOK.Store(true)
	upgradeStart := time.Now()
	s := startSuiteOn(t, r, SuiteOptions{Env: map[string]string{
		"DELIVERY_RETRY_SCHEDULE": schedule, "PARKED_MOVE_AFTER": "1s"}})

	// Every event and delivery of the old version reads back, each listed once.
	checkAll := func(stage string) []delivery {
		t.Helper()
		all := listAllDeliveries(t, s, key)
		if len(all) != wantDeliveries {
			t.Fatalf("%s: ListDeliveries lists %d, want %d", stage, len(all), wantDeliveries)
		}
		var ids []string
		for _, d := range all {
			ids = append(ids, d.ID)
		}
		if bad := parallelGET(t, s, key, ids, func(id string) string { return "/v1/deliveries/" + id }, nil); len(bad) > 0 {
			t.Fatalf("%s: GetDelivery failed for %d: %v", stage, len(bad), bad)
		}
		var evIDs []string
		for _, e := range events {
			evIDs = append(evIDs, e.id)
		}
		if bad := parallelGET(t, s, key, evIDs, func(id string) string { return "/v1/events/" + id }, nil); len(bad) > 0 {
			t.Fatalf("%s: GetEvent failed for %d: %v", stage, len(bad), bad)
		}
		listed := map[string]bool{}
		token := ""
		for {
			var out struct {
				Events []struct {
					ID string `json:"id"`
				} `json:"events"`
				NextPageToken string `json:"nextPageToken"`
			}
			s.MustDo(200, "GET", "/v1/events?pageSize=7&pageToken="+token, key, nil, &out)
			for _, e := range out.Events {
				if listed[e.ID] {
					t.Fatalf("%s: event %s listed twice", stage, e.ID)
				}
				listed[e.ID] = true
			}
			if token = out.NextPageToken; token == "" {
				break
			}
		}
		for _, e := range events {
			if !listed[e.id] {
				t.Fatalf("%s: ListEvents misses %s (listed %d of %d)", stage, e.id, len(listed), len(events))
			}
		}
		return all
	}
	checkAll("right after the upgrade")

	// The old version's ended and parked deliveries move to PostgreSQL.
	eventually(t, 30*time.Second, "the old ended and parked deliveries to leave Redis", func() bool {
		return len(liveDeliveriesBut(t, r, failEp.ID)) == 0 // the live retries stay
	})
	checkAll("after the old history moved")

	// The pending retries continue: each delivered once.
	eventually(t, 30*time.Second, "the pending retries delivered", func() bool {
		m := byStatus(s)
		return m["SUCCEEDED"] == nCompleted+2*nStarted
	})

	// Re-enabling the disabled endpoint delivers its parked work.
	goneOK.Store(true)
	s.MustDo(200, "POST", "/v1/endpoints/"+goneEp.ID+":enable", key, map[string]any{}, nil)
	eventually(t, 30*time.Second, "the parked work delivered", func() bool {
		return byStatus(s)["SUCCEEDED"] == wantDeliveries
	})

	// A repeat publish with an old idempotency key is a duplicate.
	ing2, ctx2 := s.Ingestion()
	for _, e := range events {
		var data map[string]any
		switch e.typ {
		case "transcription.completed":
			data = completed("again")
		case "transcription.started":
			data = map[string]any{"uploadId": "again", "engine": "whisper"}
		default:
			data = upload(99)
		}
		resp := publish(t, ing2, ctx2, acct, e.typ, data, e.idem)
		if !resp.GetDuplicate() || resp.GetEvent().GetId() != e.id {
			t.Fatalf("repeat of idempotency key %s: duplicate=%v id %s, want the original %s", e.idem, resp.GetDuplicate(), resp.GetEvent().GetId(), e.id)
		}
	}

	// Everything ended: all of it is in PostgreSQL, none in Redis.
	waitArchived(t, s, 30*time.Second)
	all := checkAll("after everything ended")
	for _, d := range all {
		got := s.delivery(key, d.ID)
		if _, err := historyComplete(got); err != nil {
			t.Fatalf("delivery %s (endpoint %s) from history: %v", d.ID, d.EndpointID, err)
		}
	}

	// Nothing delivered twice: each event once per endpoint, besides the
	// refusals of the old version.
	time.Sleep(time.Second) // a stray duplicate would show by now
	checkOnce := func(name string, rc *Receiver, failures int) {
		t.Helper()
		if got, want := rc.Count(), len(distinct(rc))+failures; got != want {
			t.Fatalf("%s endpoint: %d requests, want %d (each event once, plus %d refused)", name, got, want, failures)
		}
	}
	if n := len(distinct(okRc)) + len(distinct(failRc)) + len(distinct(goneRc)); n != wantDeliveries {
		t.Fatalf("%d deliveries reached the receivers, want %d", n, wantDeliveries)
	}
	checkOnce("ok", okRc, 0)
	checkOnce("failing", failRc, nStarted) // each 500 once before the upgrade
	checkOnce("disabled", goneRc, 1)       // the 410
	t.Logf("upgrade to everything delivered and archived: %v", time.Since(upgradeStart).Round(time.Millisecond))
}

func distinct(rc *Receiver) map[string]bool {
	m := map[string]bool{}
	for _, r := range rc.Requests() {
		m[r.Header.Get("X-Webhook-Id")] = true
	}
	return m
}

// liveDeliveriesBut lists the delivery hashes in Redis of endpoints other
// than the one named.
func liveDeliveriesBut(t *testing.T, r *redistest.Server, endpoint string) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := r.Client.Keys(ctx, "wh:dlv:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		if strings.HasSuffix(k, ":att") {
			continue
		}
		if ep, _ := r.Client.HGet(ctx, k, "endpoint").Result(); ep != endpoint {
			out = append(out, k)
		}
	}
	return out
}

// keyCensus counts Redis keys by their first two name parts.
func keyCensus(t *testing.T, r *redistest.Server) string {
	keys, err := r.Client.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, k := range keys {
		parts := strings.SplitN(k, ":", 3)
		if len(parts) > 2 && strings.HasPrefix(parts[1], "{a:") {
			parts[1] = "{a}:" + strings.SplitN(parts[2], ":", 2)[0]
		}
		m[strings.Join(parts[:min(2, len(parts))], ":")]++
	}
	return fmt.Sprint(m)
}
