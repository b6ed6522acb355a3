package grpcapi_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/ingestion/internal/historytier"
)

// The history tier in these tests is a real PostgreSQL (pkg/pgtest) with
// the real schema; events are archived as the archiver does: history.Archive
// commits, then the event's Redis hash is deleted.

func historyConfig() history.Config {
	return history.Config{Retention: 30 * 24 * time.Hour}
}

// withHistory is an env whose service reads a fresh history database.
func withHistory(t *testing.T) (*env, *history.Store) {
	t.Helper()
	return withHistoryOptions(t, options{})
}

// withHistoryOptions is withHistory with more options.
func withHistoryOptions(t *testing.T, o options) (*env, *history.Store) {
	t.Helper()
	store, err := history.Open(t.Context(), pgServer(t).NewDatabase(t), historyConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	o.history = historytier.New(store)
	return newEnv(t, o), store
}

// archive moves events from Redis to history: Archive, then DEL of the
// event hash (what the delivery side's archiver does once all of an
// event's deliveries ended). keep leaves the Redis copy (a crash between
// the commit and the delete).
func (e *env) archive(t *testing.T, store *history.Store, keep bool, eventIDs ...string) {
	t.Helper()
	var b history.Batch
	for _, id := range eventIDs {
		ev, err := e.store.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		b.Events = append(b.Events, history.Event{
			ID: ev.ID, AccountID: ev.AccountID, Type: ev.Type, Payload: ev.Payload, CreateTime: ev.CreateTime,
			IdempotencyKey: ev.IdempotencyKey, UploadID: ev.UploadID, TraceID: ev.TraceID, DeliveryCount: ev.DeliveryCount,
		})
	}
	res, err := store.Archive(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != len(eventIDs) || len(res.Quarantined) != 0 {
		t.Fatalf("archived %v, quarantined %v", res.Events, res.Quarantined)
	}
	if keep {
		return
	}
	for _, id := range eventIDs {
		if err := e.redis.Client.Del(t.Context(), eventstore.Key(id)).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) publish(t *testing.T, req *ingestionv1.PublishEventRequest) *ingestionv1.PublishEventResponse {
	t.Helper()
	resp, err := e.client.PublishEvent(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func listIDs(t *testing.T, e *env, ctx context.Context, req *ingestionv1.ListEventsRequest) ([]string, string) {
	t.Helper()
	resp, err := e.client.ListEvents(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range resp.GetEvents() {
		got = append(got, ev.GetId())
	}
	return got, resp.GetNextPageToken()
}

func TestArchivedEventsReadAsOneWithLiveOnes(t *testing.T) {
	e, store := withHistory(t)
	acct, ctx := e.customer(t)
	other, otherCtx := e.customer(t)
	var all []string // newest first
	for i, upload := range []string{"upl_A", "upl_B", "upl_A", "upl_B", "upl_A", "upl_C"} {
		typ := "transcription.started"
		if i%2 == 1 {
			typ = "transcription.completed"
		}
		resp := e.publish(t, &ingestionv1.PublishEventRequest{AccountId: acct, Type: typ, Data: sample(t, typ, "uploadId", upload)})
		all = append([]string{resp.GetEvent().GetId()}, all...)
		time.Sleep(2 * time.Millisecond)
	}
	o := e.publish(t, &ingestionv1.PublishEventRequest{AccountId: other, Type: "transcription.started", Data: sample(t, "transcription.started", "uploadId", "upl_A")})
	before, err := e.client.GetEvent(ctx, &ingestionv1.GetEventRequest{Id: all[5]})
	if err != nil {
		t.Fatal(err)
	}

	// The oldest three leave Redis; the fourth is in both tiers (the
	// archiver crashed between its commit and its delete).
	e.archive(t, store, false, all[5], all[4], all[3])
	e.archive(t, store, true, all[2])
	e.archive(t, store, false, o.GetEvent().GetId())
	for _, id := range []string{all[5], all[4], all[3]} {
		if n, _ := e.redis.Client.Exists(t.Context(), eventstore.Key(id)).Result(); n != 0 {
			t.Fatalf("%s still in Redis", id)
		}
	}

	got, err := e.client.GetEvent(ctx, &ingestionv1.GetEventRequest{Id: all[5]})
	if err != nil {
		t.Fatalf("GetEvent of an archived event: %v", err)
	}
	if g, w := got.GetEvent(), before.GetEvent(); g.GetPayload() != w.GetPayload() || g.GetTraceId() != w.GetTraceId() ||
		!g.GetCreateTime().AsTime().Equal(w.GetCreateTime().AsTime()) || g.GetType() != w.GetType() || g.GetData().AsMap()["uploadId"] != "upl_A" {
		t.Errorf("archived event reads back as %v, was %v", g, w)
	}
	_, err = e.client.GetEvent(otherCtx, &ingestionv1.GetEventRequest{Id: all[5]})
	grpctest.RequireCode(t, err, codes.NotFound, all[5])

	for _, tc := range []struct {
		name string
		req  *ingestionv1.ListEventsRequest
		want []string
	}{
		{"all, newest first, each once", &ingestionv1.ListEventsRequest{}, all},
		{"by upload over both tiers", &ingestionv1.ListEventsRequest{UploadId: "upl_A"}, []string{all[1], all[3], all[5]}},
		{"by type", &ingestionv1.ListEventsRequest{Type: "transcription.completed"}, []string{all[0], all[2], all[4]}},
		{"an upload only history holds", &ingestionv1.ListEventsRequest{UploadId: "upl_B", Type: "transcription.completed"}, []string{all[2], all[4]}},
	} {
		if got, next := listIDs(t, e, ctx, tc.req); !slices.Equal(got, tc.want) || next != "" {
			t.Errorf("%s: %v next %q, want %v", tc.name, got, next, tc.want)
		}
	}
	if got, _ := listIDs(t, e, otherCtx, &ingestionv1.ListEventsRequest{}); !slices.Equal(got, []string{o.GetEvent().GetId()}) {
		t.Errorf("other account lists %v", got)
	}

	// Pages of every size walk the merged listing without a skip or a repeat.
	for size := int32(1); size <= 7; size++ {
		var walked []string
		token := ""
		for range 20 {
			page, next := listIDs(t, e, ctx, &ingestionv1.ListEventsRequest{PageSize: size, PageToken: token})
			walked = append(walked, page...)
			if token = next; token == "" {
				break
			}
		}
		if !slices.Equal(walked, all) {
			t.Errorf("pages of %d: %v, want %v", size, walked, all)
		}
	}

	// since/until bound the time in the id, in both tiers.
	t2, _ := ids.Time(all[2])
	t4, _ := ids.Time(all[4])
	got2, _ := listIDs(t, e, ctx, &ingestionv1.ListEventsRequest{Since: timestamppb.New(t4), Until: timestamppb.New(t2)})
	if want := []string{all[3], all[4]}; !slices.Equal(got2, want) {
		t.Errorf("since/until: %v, want %v", got2, want)
	}
	_, err = e.client.ListEvents(ctx, &ingestionv1.ListEventsRequest{Since: timestamppb.New(t2), Until: timestamppb.New(t4)})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "until")
}

func TestRepeatOfAnArchivedEventReturnsTheOriginal(t *testing.T) {
	e, store := withHistory(t)
	acct, _ := e.customer(t)
	other, _ := e.customer(t)
	e.reg.Subscribe(acct, "transcription.completed", "ep_1", "ep_2")
	data := sample(t, "transcription.completed", "uploadId", "upl_9")
	byKey := e.publish(t, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: data, IdempotencyKey: "job-9"})
	chosen := ids.New(ids.Event, time.Now())
	byID := e.publish(t, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: data, Id: chosen})
	scheduled := len(e.dlv.calls())
	e.archive(t, store, false, byKey.GetEvent().GetId(), chosen)

	changed := sample(t, "transcription.completed", "uploadId", "upl_9", "text", "something else")
	for _, tc := range []struct {
		name string
		req  *ingestionv1.PublishEventRequest
		want *ingestionv1.Event
	}{
		{"same idempotency key", &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: changed, IdempotencyKey: "job-9"}, byKey.GetEvent()},
		{"same event id", &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: changed, Id: chosen}, byID.GetEvent()},
	} {
		resp := e.publish(t, tc.req)
		if !resp.GetDuplicate() || resp.GetEvent().GetId() != tc.want.GetId() || resp.GetEvent().GetPayload() != tc.want.GetPayload() {
			t.Errorf("%s: duplicate %t, %s %s; want the original %s %s", tc.name, resp.GetDuplicate(),
				resp.GetEvent().GetId(), resp.GetEvent().GetPayload(), tc.want.GetId(), tc.want.GetPayload())
		}
	}
	if n := len(e.dlv.calls()); n != scheduled {
		t.Errorf("repeats of archived events scheduled %d more calls", n-scheduled)
	}
	if keys := e.eventKeys(t); len(keys) != 0 {
		t.Errorf("repeats stored events in Redis again: %v", keys)
	}
	// Another account cannot take an archived event's id.
	_, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{AccountId: other, Type: "transcription.completed", Data: data, Id: chosen})
	grpctest.RequireCode(t, err, codes.AlreadyExists, "another account")
}

func TestHistoryStoreDownAnswersUnavailableForHistoryOnly(t *testing.T) {
	// A history tier whose PostgreSQL is not there: nothing listens on the
	// port, so every connection attempt is refused; it keeps retrying in
	// the background.
	url := "postgres://postgres@127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) + "/webhooks?connect_timeout=1"
	tier, err := historytier.Open(t.Context(), url, historyConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tier.Close)
	e := newEnv(t, options{history: tier})
	acct, ctx := e.customer(t)
	e.reg.Subscribe(acct, "transcription.completed", "ep_1")
	data := sample(t, "transcription.completed")

	// Publishing goes on: new events, a new idempotency key, a new
	// producer-chosen id, and a repeat of a live event.
	live := e.publish(t, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: data, IdempotencyKey: "k1"})
	e.publish(t, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: data, Id: ids.New(ids.Event, time.Now())})
	if r := e.publish(t, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: data, IdempotencyKey: "k1"}); !r.GetDuplicate() {
		t.Error("repeat of a live event not a duplicate")
	}
	// A live event reads from Redis alone.
	if _, err := e.client.GetEvent(ctx, &ingestionv1.GetEventRequest{Id: live.GetEvent().GetId()}); err != nil {
		t.Errorf("GetEvent of a live event: %v", err)
	}
	// History reads answer Unavailable, saying why.
	_, err = e.client.GetEvent(ctx, &ingestionv1.GetEventRequest{Id: ids.New(ids.Event, time.Now())})
	grpctest.RequireCode(t, err, codes.Unavailable, "history store unreachable")
	_, err = e.client.ListEvents(ctx, &ingestionv1.ListEventsRequest{})
	grpctest.RequireCode(t, err, codes.Unavailable, "history store unreachable")
	_, err = e.stats.GetDeliveryStats(ctx, &ingestionv1.GetDeliveryStatsRequest{})
	grpctest.RequireCode(t, err, codes.Unavailable, "history store unreachable")

	// The key of an event that left Redis cannot be settled without
	// history: the repeat is refused (retry), never stored anew.
	if err := e.redis.Client.Del(t.Context(), eventstore.Key(live.GetEvent().GetId())).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: data, IdempotencyKey: "k1"})
	grpctest.RequireCode(t, err, codes.Unavailable, "retry")
	for _, k := range e.eventKeys(t) {
		if strings.HasSuffix(k, live.GetEvent().GetId()) {
			t.Errorf("the repeat stored %s again", k)
		}
	}
}

func TestDeliveryStatsComeFromTheRollups(t *testing.T) {
	e, store := withHistory(t)
	acct, ctx := e.customer(t)
	_, otherCtx := e.customer(t)
	ep1, ep2 := ids.New(ids.Endpoint, time.Now()), ids.New(ids.Endpoint, time.Now())
	e.reg.Subscribe(acct, "transcription.completed", ep1, ep2)
	ev := e.publish(t, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: sample(t, "transcription.completed")}).GetEvent()
	minute := time.Now().UTC().Truncate(time.Minute)
	rec := func(ep string, atts ...history.Attempt) history.DeliveryRecord {
		now := time.Now().UTC()
		return history.DeliveryRecord{Delivery: history.Delivery{
			ID: ids.Derive(ids.Delivery, ev.GetId(), ep), EventID: ev.GetId(), EndpointID: ep, AccountID: acct,
			EventType: ev.GetType(), Status: history.StatusSucceeded, Version: 1, Attempts: len(atts),
			FirstAttempt: minute, CreateTime: now, UpdateTime: now,
		}, Attempts: atts}
	}
	at := func(n, code int, errType string, lat time.Duration) history.Attempt {
		return history.Attempt{Number: n, Start: minute.Add(time.Duration(n) * time.Second), StatusCode: code, ErrorType: errType, Latency: lat}
	}
	if _, err := store.Archive(t.Context(), history.Batch{Deliveries: []history.DeliveryRecord{
		rec(ep1, at(1, 0, "timeout", 5*time.Second), at(2, 503, "http_status", 30*time.Millisecond), at(3, 200, "", 20*time.Millisecond)),
		rec(ep2, at(1, 200, "", 40*time.Millisecond)),
	}}); err != nil {
		t.Fatal(err)
	}

	point := func(ctx context.Context, ep string) *ingestionv1.DeliveryStatsPoint {
		t.Helper()
		resp, err := e.stats.GetDeliveryStats(ctx, &ingestionv1.GetDeliveryStatsRequest{EndpointId: ep,
			Since: timestamppb.New(minute.Add(-time.Hour)), Until: timestamppb.New(minute.Add(time.Minute))})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetPoints()); n != 61 {
			t.Fatalf("%d points for 61 minutes", n)
		}
		return resp.GetPoints()[60]
	}
	if p := point(ctx, ""); p.GetSucceeded() != 2 || p.GetHttpError() != 1 || p.GetNetworkError() != 1 || p.GetLatencyP50Ms() <= 0 || p.GetLatencyP99Ms() < p.GetLatencyP50Ms() {
		t.Errorf("account's minute: %v", p)
	}
	if p := point(ctx, ep2); p.GetSucceeded() != 1 || p.GetHttpError()+p.GetNetworkError() != 0 {
		t.Errorf("endpoint 2's minute: %v", p)
	}
	if p := point(otherCtx, ""); p.GetSucceeded()+p.GetHttpError()+p.GetNetworkError() != 0 {
		t.Errorf("another account sees %v", p)
	}
	// The default window is the last 24 h; it is bounded.
	resp, err := e.stats.GetDeliveryStats(ctx, &ingestionv1.GetDeliveryStatsRequest{})
	if err != nil || len(resp.GetPoints()) < 24*60 || len(resp.GetPoints()) > 24*60+1 {
		t.Errorf("default window: %d points, %v", len(resp.GetPoints()), err)
	}
	_, err = e.stats.GetDeliveryStats(ctx, &ingestionv1.GetDeliveryStatsRequest{Since: timestamppb.New(minute.Add(-8 * 24 * time.Hour))})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "since")
	_, err = e.stats.GetDeliveryStats(ctx, &ingestionv1.GetDeliveryStatsRequest{EndpointId: "nope"})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "endpoint_id")
}
