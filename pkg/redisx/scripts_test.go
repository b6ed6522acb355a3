package redisx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redistest"
)

// incrScript counts its runs in KEYS[1] and returns the count and ARGV[1].
var incrScript = redis.NewScript(`return {redis.call('INCR', KEYS[1]), ARGV[1]}`)

// otherScript is a second script (another hash) that counts its runs.
var otherScript = redis.NewScript(`return redis.call('INCRBY', KEYS[1], 1)`)

// failScript fails when ARGV[1] is "fail", else returns "ok".
var failScript = redis.NewScript(`
if ARGV[1] == 'fail' then return redis.error_reply('ERR told to fail') end
return 'ok'
`)

// counts returns the integer values of keys (0 when unset).
func counts(t *testing.T, ctx context.Context, rdb redis.Cmdable, keys ...string) []int {
	t.Helper()
	out := make([]int, len(keys))
	for i, k := range keys {
		n, err := rdb.Get(ctx, k).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("GET %s: %v", k, err)
		}
		out[i] = n
	}
	return out
}

// callCount is how many calls of the command cmd (lower case: eval,
// evalsha) the server has run so far.
func callCount(t *testing.T, ctx context.Context, rdb redis.Cmdable, cmd string) int {
	t.Helper()
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
			var n int
			fmt.Sscanf(rest, "%d", &n)
			return n
		}
	}
	return 0
}

// TestRunScripts: calls run by hash with their replies in call order and
// the after commands behind them; after SCRIPT FLUSH (a restarted Redis)
// the calls that meet NOSCRIPT are sent again by source, and only they, so
// every script ran exactly once; a script's error is its call's only,
// while an after command's error is every call's.
func TestRunScripts(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client
	ctx := context.Background()

	const n = 5
	calls := func(key string) []ScriptCall {
		cs := make([]ScriptCall, n)
		for i := range cs {
			cs[i] = ScriptCall{Script: incrScript, Keys: []string{key}, Args: []any{i}}
		}
		return cs
	}
	after := func(p redis.Pipeliner) { p.Incr(ctx, "after") }
	check := func(res []any, errs []error, key string) {
		t.Helper()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("call %d: %v", i, errs[i])
			}
			want := []any{int64(i + 1), fmt.Sprint(i)}
			if got, _ := res[i].([]any); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				t.Fatalf("call %d: reply %#v, want %#v (call order)", i, res[i], want)
			}
		}
		if got := counts(t, ctx, rdb, key)[0]; got != n {
			t.Fatalf("%s = %d after %d calls: a script ran twice or not at all", key, got, n)
		}
	}

	// Cold cache on the first run: NOSCRIPT, then by source.
	res, errs := RunScripts(ctx, rdb, calls("first"), after)
	check(res, errs, "first")
	if got := counts(t, ctx, rdb, "after")[0]; got != 2 {
		t.Fatalf("after ran %d times, want 2 (in both pipelines)", got)
	}

	// Cached: one pipeline by hash, no EVAL.
	evals := callCount(t, ctx, rdb, "eval")
	res, errs = RunScripts(ctx, rdb, calls("cached"), after)
	check(res, errs, "cached")
	if got := counts(t, ctx, rdb, "after")[0]; got != 3 {
		t.Fatalf("after ran %d times in all, want 3", got)
	}
	if got := callCount(t, ctx, rdb, "eval"); got != evals {
		t.Fatalf("%d EVALs with every script cached, want none", got-evals)
	}

	// A flushed cache with one of two scripts loaded again: only the calls
	// of the other are re-sent by source.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := otherScript.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	mixed := append(calls("flushed"), ScriptCall{Script: otherScript, Keys: []string{"other"}},
		ScriptCall{Script: otherScript, Keys: []string{"other"}})
	evals = callCount(t, ctx, rdb, "eval")
	res, errs = RunScripts(ctx, rdb, mixed, nil)
	check(res[:n], errs[:n], "flushed")
	for i := n; i < len(mixed); i++ {
		if errs[i] != nil || res[i] != int64(i-n+1) {
			t.Fatalf("call %d: %v, %v", i, res[i], errs[i])
		}
	}
	if got := counts(t, ctx, rdb, "other")[0]; got != 2 {
		t.Fatalf("other = %d after 2 calls", got)
	}
	if got := callCount(t, ctx, rdb, "eval") - evals; got != n {
		t.Fatalf("%d calls re-sent by source, want the %d that met NOSCRIPT", got, n)
	}

	// A script error is its call's only, by hash and by source.
	for _, flush := range []bool{false, true} {
		if flush {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		fc := []ScriptCall{
			{Script: failScript, Keys: []string{"f"}, Args: []any{"pass"}},
			{Script: failScript, Keys: []string{"f"}, Args: []any{"fail"}},
			{Script: failScript, Keys: []string{"f"}, Args: []any{"pass"}},
		}
		res, errs = RunScripts(ctx, rdb, fc, nil)
		if errs[0] != nil || errs[2] != nil || res[0] != "ok" || res[2] != "ok" {
			t.Fatalf("flush %v: the passing calls: %v %v, %v %v", flush, res[0], errs[0], res[2], errs[2])
		}
		if errs[1] == nil || !strings.Contains(errs[1].Error(), "told to fail") {
			t.Fatalf("flush %v: the failing call's error: %v", flush, errs[1])
		}
	}

	// An after command's error is every call's.
	if err := rdb.Set(ctx, "notint", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, errs = RunScripts(ctx, rdb, calls("bad-after"), func(p redis.Pipeliner) { p.Incr(ctx, "notint") })
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "not an integer") {
			t.Fatalf("call %d with a failing after command: %v", i, err)
		}
	}

	// A connection's error is every call's.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, errs = RunScripts(cctx, rdb, calls("cancelled"), nil)
	for i, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("call %d with a cancelled context: %v", i, err)
		}
	}

	if res, errs := RunScripts(ctx, rdb, nil, after); len(res) != 0 || len(errs) != 0 {
		t.Fatalf("no calls: %v %v", res, errs)
	}
}

// openCluster starts a 3-node Redis Cluster and opens a client of it.
func openCluster(t *testing.T) (*redistest.Cluster, redis.UniversalClient) {
	t.Helper()
	cl := redistest.StartCluster(t, 3)
	c, err := Open(context.Background(), cl.URL, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return cl, c
}

// TestRunScriptsOnCluster: a cluster client splits the pipelines by slot;
// after every primary's cache is flushed, each call still runs once.
func TestRunScriptsOnCluster(t *testing.T) {
	cl, c := openCluster(t)
	ctx := context.Background()
	keys := make([]string, 30) // of many slots, so of every node
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	run := func() {
		t.Helper()
		calls := make([]ScriptCall, len(keys))
		for i, k := range keys {
			calls[i] = ScriptCall{Script: incrScript, Keys: []string{k}, Args: []any{k}}
		}
		res, errs := RunScripts(ctx, c, calls, nil)
		for i := range calls {
			if got, _ := res[i].([]any); errs[i] != nil || len(got) != 2 || got[1] != keys[i] {
				t.Fatalf("call %d: %v, %v", i, res[i], errs[i])
			}
		}
	}
	run()
	for _, n := range cl.Nodes {
		if err := n.Client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	run()
	for i, k := range keys {
		if got := counts(t, ctx, c, k)[0]; got != 2 {
			t.Fatalf("key %d = %d after 2 runs", i, got)
		}
	}
}

// tagScript is written for many keys: per key KEYS[i] and its two
// arguments joined, after counting the run in the key.
var tagScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i])
  out[i] = KEYS[i] .. ':' .. ARGV[2 * i - 1] .. ARGV[2 * i]
end
return out
`)

// runForKeys runs tagScript over n keys and checks every key's entry, in
// order, and that each key ran once more.
func runForKeys(t *testing.T, ctx context.Context, rdb redis.UniversalClient, n, runs int) {
	t.Helper()
	keys := make([]string, n)
	var args []any
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
		args = append(args, "a", i)
	}
	got, err := RunForKeys(ctx, rdb, tagScript, keys, args, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d entries for %d keys", len(got), n)
	}
	for i, k := range keys {
		if want := fmt.Sprintf("%s:a%d", k, i); got[i] != want {
			t.Fatalf("entry %d = %v, want %s", i, got[i], want)
		}
		if c := counts(t, ctx, rdb, k)[0]; c != runs {
			t.Fatalf("key %s ran %d times, want %d", k, c, runs)
		}
	}
}

// TestRunForKeys: on a standalone Redis the keys go MaxKeysPerCall to a
// call, each key's entry comes back in order, a flushed script cache is
// refilled, and arguments that do not match the keys are refused before
// anything runs.
func TestRunForKeys(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := srv.Client
	n := 2*MaxKeysPerCall + 201
	before := callCount(t, ctx, rdb, "evalsha")
	runForKeys(t, ctx, rdb, n, 1)
	if calls := callCount(t, ctx, rdb, "evalsha") - before; calls != 3 {
		t.Errorf("%d keys took %d EVALSHA calls, want 3", n, calls)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	runForKeys(t, ctx, rdb, n, 2)
	if _, err := RunForKeys(ctx, rdb, tagScript, []string{"x", "y"}, []any{"a", 1, "b"}, 2, nil); err == nil || !strings.Contains(err.Error(), "3 arguments for 2 keys of arity 2") {
		t.Errorf("mismatched arguments: %v", err)
	}
	if c := counts(t, ctx, rdb, "x")[0]; c != 0 {
		t.Errorf("a refused call ran: x = %d", c)
	}
	short := redis.NewScript(`return {1}`)
	if _, err := RunForKeys(ctx, rdb, short, []string{"x", "y"}, nil, 0, nil); err == nil || !strings.Contains(err.Error(), "answered 1 entries for 2 keys") {
		t.Errorf("a script answering too few entries: %v", err)
	}
}

// TestRunForKeysOnCluster: on a Redis Cluster every key is a call of its
// own (its slot's node), with the same answers.
func TestRunForKeysOnCluster(t *testing.T) {
	cl, c := openCluster(t)
	ctx := context.Background()
	runForKeys(t, ctx, c, 40, 1) // keys of many slots, so of every node
	for _, n := range cl.Nodes {
		if err := n.Client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	runForKeys(t, ctx, c, 40, 2)
}
