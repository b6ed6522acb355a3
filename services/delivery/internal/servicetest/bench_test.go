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

// BenchmarkDeliver measures end-to-end throughput: Schedule (batches of 500
// through the gRPC API) → Redis schedule → claim → signed POST to a local
// receiver answering 200 → outcome recorded.
func BenchmarkDeliver(b *testing.B) {
	e := newEnv(b)
	p := e.start(procOpts{workers: 256})
	acct, _ := e.account()
	var got atomic.Int64
	rc := newReceiver(b, func(w http.ResponseWriter, r *http.Request, n int) {
		got.Add(1)
		w.WriteHeader(http.StatusOK)
	})
	secret := signing.GenerateSecret()
	const batch = 500
	evts := make([]string, batch)
	for i := range evts {
		evts[i], _ = e.publish(acct, completed)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for k, sent := 0, 0; sent < b.N; k++ {
		// Each batch goes to another endpoint (same receiver): 500 new deliveries.
		ep := "ep_bench_" + strconv.Itoa(k)
		e.reg.SetEndpoint(acct, ep, rc.url("/"), active(), nil, secret)
		n := min(batch, b.N-sent)
		items := make([]*deliveryv1.ScheduleItem, n)
		for i := range items {
			items[i] = item(evts[i], ep)
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
