package servicetest

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/signing"
)

// auditEntries is every entry of acct waiting in Redis (both kinds of
// keys: the account's hash and its hashes in the delivery shards).
func (e *env) auditEntries(acct string) []auditlog.Entry {
	e.t.Helper()
	ctx := context.Background()
	a, err := auditlog.Live(ctx, e.rdb, acct)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := auditlog.ShardLive(ctx, e.rdb, acct)
	if err != nil {
		e.t.Fatal(err)
	}
	return append(a, b...)
}

func countAction(es []auditlog.Entry, action, resource string) int {
	n := 0
	for _, e := range es {
		if e.Action == action && e.Resource == resource {
			n++
		}
	}
	return n
}

// TestRetryAndReplayWriteTheirAuditEntriesThroughTheAPI: RetryDelivery
// writes its entry (actor: the API key) in the script that makes the
// delivery due, so a retry refused because its attempt is in flight
// writes none; ReplayEndpoint writes one entry once validated, none when
// refused.
func TestRetryAndReplayWriteTheirAuditEntriesThroughTheAPI(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{schedule: []time.Duration{0}, workers: 2})
	acct, key := e.account()
	hold := make(chan struct{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(hold) }) }
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 {
			<-hold // the retried attempt stays in flight until released
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	t.Cleanup(release) // before the receiver's Close, which waits for its handlers
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
	evt, _ := e.publish(acct, completed)
	id := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))[0]
	p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED, 10*time.Second)
	if es := e.auditEntries(acct); len(es) != 0 {
		t.Fatalf("entries before any retry: %+v", es)
	}

	if _, err := p.client.RetryDelivery(context.Background(), &deliveryv1.RetryDeliveryRequest{Id: id}, as(key)); err != nil {
		t.Fatal(err)
	}
	es := e.auditEntries(acct)
	if countAction(es, auditlog.DeliveryRetry, id) != 1 || len(es) != 1 {
		t.Fatalf("entries after the retry: %+v; want one delivery.retry of %s", es, id)
	}
	if a := es[0].Actor; a.Type != auditlog.ActorKey || a.KeyID == "" || !strings.Contains(es[0].Summary, evt) {
		t.Fatalf("retry entry %+v: want the API key as actor and the event in the summary", es[0])
	}
	// The retried attempt is in flight: a retry now changes nothing and
	// records nothing.
	waitFor(t, 10*time.Second, func() bool { return rc.count() == 2 }, func() string { return "the retried attempt did not start" })
	if _, err := p.client.RetryDelivery(context.Background(), &deliveryv1.RetryDeliveryRequest{Id: id}, as(key)); err != nil {
		t.Fatal(err)
	}
	if n := countAction(e.auditEntries(acct), auditlog.DeliveryRetry, id); n != 1 {
		t.Fatalf("%d retry entries after a retry of a delivery in flight, want 1", n)
	}
	release()
	p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED, 10*time.Second)

	// A replay refused writes nothing; one accepted writes one entry.
	since := timestamppb.New(time.Now().Add(-time.Hour))
	_, err := p.client.ReplayEndpoint(context.Background(), &deliveryv1.ReplayEndpointRequest{EndpointId: "ep_unknown", Since: since}, as(key))
	grpctest.RequireCode(t, err, codes.NotFound)
	resp, err := p.client.ReplayEndpoint(context.Background(), &deliveryv1.ReplayEndpointRequest{EndpointId: "ep_a", Since: since}, as(key))
	if err != nil || resp.GetQueued() != 1 {
		t.Fatalf("ReplayEndpoint = %v, %v; want 1 queued", resp, err)
	}
	es = e.auditEntries(acct)
	if countAction(es, auditlog.EndpointReplay, "ep_a") != 1 || countAction(es, auditlog.EndpointReplay, "ep_unknown") != 0 || len(es) != 2 {
		t.Fatalf("entries after the replays: %+v", es)
	}
}
