package servicetest

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

// benchBatch is how many events a benchmark stores, and how many
// deliveries one of its Schedule calls makes.
const benchBatch = 500

// benchRig is what the delivery benchmarks share: a delivery process, an
// account, a receiver counting the requests it answered 200 (after delay),
// and benchBatch stored events of one type.
type benchRig struct {
	e      *env
	p      *proc
	acct   string
	secret string
	rc     *receiver
	got    *atomic.Int64
	evts   []string
}

func newBenchRig(b *testing.B, o procOpts, eventType string, delay time.Duration) *benchRig {
	e := newEnv(b)
	r := &benchRig{e: e, p: e.start(o), secret: signing.GenerateSecret(), got: &atomic.Int64{}}
	r.acct, _ = e.account()
	r.rc = newReceiver(b, func(w http.ResponseWriter, _ *http.Request, _ int) {
		if delay > 0 {
			time.Sleep(delay)
		}
		r.got.Add(1)
		w.WriteHeader(http.StatusOK)
	})
	r.evts = make([]string, benchBatch)
	for i := range r.evts {
		r.evts[i], _ = e.publish(r.acct, eventType)
	}
	return r
}

// endpoint registers the k-th endpoint of a run (every one at the same
// receiver): each batch goes to another endpoint, so its deliveries are new.
func (r *benchRig) endpoint(k int) string {
	ep := "ep_bench_" + strconv.Itoa(k)
	r.e.reg.SetEndpoint(r.acct, ep, r.rc.url("/"), active(), nil, r.secret)
	return ep
}

// BenchmarkDeliver measures end-to-end throughput: Schedule (batches of 500
// through the gRPC API) → Redis schedule → claim → signed POST to a local
// receiver answering 200 → outcome recorded.
func BenchmarkDeliver(b *testing.B) {
	r := newBenchRig(b, procOpts{workers: 256}, completed, 0)
	e, p, acct, got := r.e, r.p, r.acct, r.got
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for k, sent := 0, 0; sent < b.N; k++ {
		ep := r.endpoint(k)
		n := min(benchBatch, b.N-sent)
		items := make([]*deliveryv1.ScheduleItem, n)
		for i := range items {
			items[i] = item(r.evts[i], ep)
		}
		p.schedule(b, ctx, acct, completed, items...)
		sent += n
	}
	idle := func() bool {
		for s := range redisqueue.Shards {
			if e.rdb.ZCard(ctx, "wh:sched:{s"+strconv.Itoa(s)+"}").Val() != 0 {
				return false
			}
		}
		return true
	}
	waitFor(b, 5*time.Minute, func() bool { return got.Load() >= int64(b.N) && idle() },
		func() string { return fmt.Sprintf("%d of %d delivered", got.Load(), b.N) })
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkOrdered compares, in one run, the same load to an unordered
// endpoint and to one ordered by key (issue #15): keys of 5 events each,
// published round by round (event r of every key, then r+1), through the
// gRPC Schedule in calls of 500, to a receiver answering 200 after 1 ms.
// One op is one delivery. one-key puts every event in one line: the floor
// is one claim, send and record per event, one after another.
//
//	go test -run '^$' -bench Ordered -benchtime 20000x ./services/delivery/internal/servicetest/
func BenchmarkOrdered(b *testing.B) {
	for _, c := range []struct {
		name    string
		ordered bool
		keys    int // per endpoint of 500 deliveries
	}{{"unordered", false, 100}, {"ordered", true, 100}, {"one-key", true, 1}} {
		b.Run(c.name, func(b *testing.B) {
			n := b.N
			if c.keys == 1 {
				n = min(n, 500) // one endpoint, one line: sequential by design
			}
			r := newBenchRig(b, procOpts{workers: 256, endpointConcurrency: 256}, progress, time.Millisecond)
			p, acct, got, evts := r.p, r.acct, r.got, r.evts
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			for k, sent := 0, 0; sent < n; k++ {
				ep := r.endpoint(k)
				m := min(benchBatch, n-sent)
				per := benchBatch / c.keys // events per key
				items := make([]*deliveryv1.ScheduleItem, 0, m)
				for r := 0; r < per && len(items) < m; r++ {
					for key := 0; key < c.keys && len(items) < m; key++ {
						it := item(evts[key*per+r], ep)
						if c.ordered {
							it.OrderingKey = "upl_" + strconv.Itoa(key)
						}
						items = append(items, it)
					}
				}
				p.schedule(b, ctx, acct, progress, items...)
				sent += m
			}
			waitFor(b, 10*time.Minute, func() bool { return got.Load() >= int64(n) },
				func() string { return fmt.Sprintf("%d of %d delivered", got.Load(), n) })
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n)/elapsed.Seconds(), "deliveries/s")
		})
	}
}
