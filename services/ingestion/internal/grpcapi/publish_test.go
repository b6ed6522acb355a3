package grpcapi_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/services/ingestion/internal/index"
)

func TestPublishRejectsInvalidEventsAndStoresNothing(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.Subscribe(acct, "transcription.started", "ep_1")
	huge := strings.Repeat("a", events.DefaultMaxPayloadBytes)

	tests := []struct {
		name, eventType string
		data            *structpb.Struct
		account, id     string
		key             string
		field           string
	}{
		// Missing fields, one per type.
		{name: "started missing engine", eventType: "transcription.started", data: sample(t, "transcription.started", "engine", deleted), field: "data.engine"},
		{name: "progress missing percentage", eventType: "transcription.progress", data: sample(t, "transcription.progress", "percentage", deleted), field: "data.percentage"},
		{name: "completed missing text", eventType: "transcription.completed", data: sample(t, "transcription.completed", "text", deleted), field: "data.text"},
		{name: "failed missing errorType", eventType: "transcription.failed", data: sample(t, "transcription.failed", "errorType", deleted), field: "data.errorType"},
		{name: "retry missing attempt", eventType: "transcription.retry", data: sample(t, "transcription.retry", "attempt", deleted), field: "data.attempt"},
		{name: "upload missing uploadId", eventType: "upload.completed", data: sample(t, "upload.completed", "uploadId", deleted), field: "data.uploadId"},
		{name: "credits missing threshold", eventType: "credits.low", data: sample(t, "credits.low", "threshold", deleted), field: "data.threshold"},
		{name: "no data at all", eventType: "transcription.started", data: nil, field: "data.uploadId"},

		// Wrong types, one per type.
		{name: "started engine number", eventType: "transcription.started", data: sample(t, "transcription.started", "engine", 3.0), field: "data.engine"},
		{name: "progress percentage string", eventType: "transcription.progress", data: sample(t, "transcription.progress", "percentage", "45"), field: "data.percentage"},
		{name: "completed duration bool", eventType: "transcription.completed", data: sample(t, "transcription.completed", "duration", true), field: "data.duration"},
		{name: "failed error object", eventType: "transcription.failed", data: sample(t, "transcription.failed", "error", map[string]any{}), field: "data.error"},
		{name: "retry attempt fraction", eventType: "transcription.retry", data: sample(t, "transcription.retry", "attempt", 1.5), field: "data.attempt"},
		{name: "upload size string", eventType: "upload.completed", data: sample(t, "upload.completed", "size", "big"), field: "data.size"},
		{name: "credits balance null", eventType: "credits.low", data: sample(t, "credits.low", "balance", nil), field: "data.balance"},

		// Out of range, one per type.
		{name: "started empty engine", eventType: "transcription.started", data: sample(t, "transcription.started", "engine", ""), field: "data.engine"},
		{name: "progress above 100", eventType: "transcription.progress", data: sample(t, "transcription.progress", "percentage", 100.5), field: "data.percentage"},
		{name: "completed negative credits", eventType: "transcription.completed", data: sample(t, "transcription.completed", "credits", -1.0), field: "data.credits"},
		{name: "failed errorType pattern", eventType: "transcription.failed", data: sample(t, "transcription.failed", "errorType", "Engine-Error"), field: "data.errorType"},
		{name: "retry attempt zero", eventType: "transcription.retry", data: sample(t, "transcription.retry", "attempt", 0.0), field: "data.attempt"},
		{name: "upload negative size", eventType: "upload.completed", data: sample(t, "upload.completed", "size", -1.0), field: "data.size"},
		{name: "credits NaN", eventType: "credits.low", data: sample(t, "credits.low", "balance", math.NaN()), field: "data.balance"},

		// Unknown fields, one per type.
		{name: "started unknown", eventType: "transcription.started", data: sample(t, "transcription.started", "language", "en"), field: "data.language"},
		{name: "progress unknown", eventType: "transcription.progress", data: sample(t, "transcription.progress", "eta", 1.0), field: "data.eta"},
		{name: "completed unknown", eventType: "transcription.completed", data: sample(t, "transcription.completed", "words", 9.0), field: "data.words"},
		{name: "failed unknown", eventType: "transcription.failed", data: sample(t, "transcription.failed", "code", 500.0), field: "data.code"},
		{name: "retry unknown", eventType: "transcription.retry", data: sample(t, "transcription.retry", "reason", "x"), field: "data.reason"},
		{name: "upload unknown", eventType: "upload.completed", data: sample(t, "upload.completed", "uploadID", "upl_1"), field: "data.uploadID"},
		{name: "credits unknown", eventType: "credits.low", data: sample(t, "credits.low", "currency", "EUR"), field: "data.currency"},

		// The type, the size, and the envelope's own fields.
		{name: "unknown type", eventType: "transcription.paused", data: sample(t, "transcription.started"), field: "type"},
		{name: "empty type", eventType: "", data: sample(t, "transcription.started"), field: "type"},
		{name: "oversize payload", eventType: "transcription.completed", data: sample(t, "transcription.completed", "text", huge), field: "data"},
		{name: "missing account", eventType: "transcription.started", data: sample(t, "transcription.started"), account: "-", field: "account_id"},
		{name: "malformed account", eventType: "transcription.started", data: sample(t, "transcription.started"), account: "acct_1", field: "account_id"},
		{name: "malformed id", eventType: "transcription.started", data: sample(t, "transcription.started"), id: "evt_nope", field: "id"},
		{name: "long idempotency key", eventType: "transcription.started", data: sample(t, "transcription.started"), key: strings.Repeat("k", 256), field: "idempotency_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			account := acct
			switch tt.account {
			case "-":
				account = ""
			case "":
			default:
				account = tt.account
			}
			key := tt.key
			if key == "" {
				key = "key-" + tt.name
			}
			_, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
				AccountId: account, Type: tt.eventType, Data: tt.data, IdempotencyKey: key, Id: tt.id,
			})
			grpctest.RequireCode(t, err, codes.InvalidArgument, tt.field+": ")
			if got := fieldViolation(err); got != tt.field {
				t.Errorf("BadRequest field = %q, want %q", got, tt.field)
			}
			if n := e.dbsize(t); n != 0 {
				t.Fatalf("DBSIZE = %d after a rejected event, want 0", n)
			}
		})
	}
	if calls := e.dlv.calls(); len(calls) != 0 {
		t.Errorf("Schedule called %d times for invalid events", len(calls))
	}
}

func fieldViolation(err error) string {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

func TestPublishStoresExactEnvelopeAndFansOut(t *testing.T) {
	e := newEnv(t, options{})
	acct, custCtx := e.customer(t)
	e.reg.Subscribe(acct, "transcription.completed", "ep_a", "ep_b")
	e.reg.Subscribe(acct, "transcription.started", "ep_c")

	// Data as a producer sends it: keys in any order, HTML characters,
	// non-ASCII text, an integral and a fractional number.
	var data structpb.Struct
	if err := data.UnmarshalJSON([]byte(`{"credits":3,"duration":12.5,"text":"Olá <b>&</b> “quoted”","uploadId":"upl_123"}`)); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Millisecond)
	resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: acct, Type: "transcription.completed", Data: &data,
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := resp.GetEvent()
	if resp.GetDuplicate() {
		t.Error("a first publish is marked duplicate")
	}
	if !ids.Valid(ids.Event, ev.GetId()) {
		t.Fatalf("event id %q", ev.GetId())
	}
	created := ev.GetCreateTime().AsTime()
	if idTime, _ := ids.Time(ev.GetId()); !idTime.Equal(created) || created.Before(before) || created.After(time.Now()) || created.Nanosecond()%1e6 != 0 {
		t.Errorf("create_time %v, id time %v, published after %v", created, idTime, before)
	}
	want := `{"id":"` + ev.GetId() + `","type":"transcription.completed","timestamp":"` + created.Format("2006-01-02T15:04:05.000Z") +
		`","data":{"uploadId":"upl_123","text":"Olá <b>&</b> “quoted”","duration":12.5,"credits":3}}`
	if ev.GetPayload() != want {
		t.Fatalf("payload\n%s\nwant\n%s", ev.GetPayload(), want)
	}
	stored, err := e.store.Payload(t.Context(), ev.GetId())
	if err != nil || string(stored) != want {
		t.Fatalf("stored payload %q, %v", stored, err)
	}
	if ev.GetDeliveryCount() != 2 || ev.GetAccountId() != acct || ev.GetData().GetFields()["duration"].GetNumberValue() != 12.5 {
		t.Errorf("event %v", ev)
	}
	if len(ev.GetTraceId()) != 32 || ev.GetTraceUrl() != jaegerUI+"/trace/"+ev.GetTraceId() {
		t.Errorf("trace id %q url %q", ev.GetTraceId(), ev.GetTraceUrl())
	}

	// One Schedule call with both deliveries, carrying the publish trace.
	calls := e.dlv.calls()
	if len(calls) != 1 {
		t.Fatalf("%d Schedule calls, want 1", len(calls))
	}
	c := calls[0]
	if c.GetAccountId() != acct || c.GetEventType() != "transcription.completed" || len(c.GetItems()) != 2 ||
		c.GetItems()[0].GetEventId() != ev.GetId() || c.GetItems()[0].GetEndpointId() != "ep_a" || c.GetItems()[1].GetEndpointId() != "ep_b" {
		t.Errorf("Schedule request %v", c)
	}
	if tp := e.dlv.traceparents[0]; !strings.Contains(tp, ev.GetTraceId()) {
		t.Errorf("Schedule traceparent %q does not carry trace %s", tp, ev.GetTraceId())
	}

	// The store, the account's list and their expiry.
	se, err := e.store.Get(t.Context(), ev.GetId())
	if err != nil || !se.FanoutDone || se.DeliveryCount != 2 || se.UploadID != "upl_123" || se.TraceID != ev.GetTraceId() {
		t.Fatalf("stored event %+v, %v", se, err)
	}
	if score, err := e.redis.Client.ZScore(t.Context(), index.EventsKey(acct), ev.GetId()).Result(); err != nil || int64(score) != created.UnixMilli() {
		t.Errorf("events zset score %v, %v", score, err)
	}
	// The event, fanned out to deliveries, never expires (the archiver
	// deletes it once history holds it and them); the list is trimmed.
	if ttl := e.redis.Client.PTTL(t.Context(), eventstore.Key(ev.GetId())).Val(); ttl != -1 {
		t.Errorf("the fanned-out event expires in %v, want no TTL", ttl)
	}
	if ttl := e.redis.Client.PTTL(t.Context(), index.EventsKey(acct)).Val(); ttl <= 0 || ttl > retention {
		t.Errorf("%s expires in %v, want within %v", index.EventsKey(acct), ttl, retention)
	}

	// The customer reads the same event.
	got, err := e.client.GetEvent(custCtx, &ingestionv1.GetEventRequest{Id: ev.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetEvent().GetPayload() != want || got.GetEvent().GetData().GetFields()["text"].GetStringValue() != "Olá <b>&</b> “quoted”" {
		t.Errorf("GetEvent = %v", got.GetEvent())
	}

	// An event type nobody subscribes to is stored without a Schedule call.
	resp, err = e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: acct, Type: "upload.completed", Data: sample(t, "upload.completed"),
	})
	if err != nil || resp.GetEvent().GetDeliveryCount() != 0 {
		t.Fatalf("unsubscribed publish: %v, %v", resp, err)
	}
	if n := len(e.dlv.calls()); n != 1 {
		t.Errorf("%d Schedule calls after an unsubscribed event, want 1", n)
	}
}

// TestPublishAnswersWithTheDataGetEventReads: a publish answers with the
// caller's data (not decoded back from the payload), so it must be what
// GetEvent reads from the stored payload, for numbers at the edges of
// their JSON form too; a duplicate answers with the stored data.
func TestPublishAnswersWithTheDataGetEventReads(t *testing.T) {
	e := newEnv(t, options{})
	acct, custCtx := e.customer(t)
	e.reg.Subscribe(acct, "transcription.completed", "ep_a")
	check := func(what string, ev *ingestionv1.Event) {
		t.Helper()
		got, err := e.client.GetEvent(custCtx, &ingestionv1.GetEventRequest{Id: ev.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		// As JSON, the form REST answers in (proto.Equal takes -0 for 0).
		answered, _ := protojson.Marshal(ev.GetData())
		read, _ := protojson.Marshal(got.GetEvent().GetData())
		if string(answered) != string(read) {
			t.Errorf("%s: answered data %s, GetEvent reads %s (payload %s)", what, answered, read, got.GetEvent().GetPayload())
		}
	}
	for i, num := range []float64{0, math.Copysign(0, -1), 3, 12.5, 0.1, 1e-7, 1 << 53, 1<<53 + 2, 1e21, 4.5e300} {
		data, err := structpb.NewStruct(map[string]any{"uploadId": fmt.Sprintf("upl_%d", i), "text": "Olá <b>&</b> “quoted”", "duration": num, "credits": 1})
		if err != nil {
			t.Fatal(err)
		}
		req := &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: data, IdempotencyKey: fmt.Sprintf("edge-%d", i)}
		resp, err := e.client.PublishEvent(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("duration %v", num), resp.GetEvent())
		batch, err := e.client.PublishEvents(t.Context(), &ingestionv1.PublishEventsRequest{Events: []*ingestionv1.PublishEventRequest{
			{AccountId: acct, Type: "transcription.completed", Data: data},
		}})
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("duration %v in a batch", num), batch.GetResults()[0].GetEvent())
	}
	// A repeat of a key with other data answers with the stored event's.
	other, _ := structpb.NewStruct(map[string]any{"uploadId": "upl_other", "text": "other", "duration": 1, "credits": 1})
	resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: other, IdempotencyKey: "edge-3"})
	if err != nil || !resp.GetDuplicate() {
		t.Fatalf("repeat: %v, %v", resp, err)
	}
	if up := resp.GetEvent().GetData().GetFields()["uploadId"].GetStringValue(); up != "upl_3" {
		t.Errorf("a duplicate answers with uploadId %q, want the stored upl_3", up)
	}
	check("duplicate", resp.GetEvent())
}

func TestIdsAreTimeOrdered(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	var got []string
	for range 5 {
		resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
			AccountId: acct, Type: "transcription.started", Data: sample(t, "transcription.started"),
		})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.GetEvent().GetId())
		time.Sleep(2 * time.Millisecond)
	}
	if !sort.StringsAreSorted(got) {
		t.Errorf("ids not in publish order: %v", got)
	}
}

func TestIdempotencyKeyPublishesOnce(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.Subscribe(acct, "transcription.progress", "ep_1", "ep_2")

	var first *ingestionv1.Event
	for i := range 3 {
		// The third repeat even changes the data: it still gets the original.
		pct := 10.0
		if i == 2 {
			pct = 90
		}
		resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
			AccountId: acct, Type: "transcription.progress", IdempotencyKey: "upl_9/progress/10",
			Data: sample(t, "transcription.progress", "percentage", pct),
		})
		if err != nil {
			t.Fatalf("publish %d: %v", i+1, err)
		}
		if resp.GetDuplicate() != (i > 0) {
			t.Errorf("publish %d: duplicate = %v", i+1, resp.GetDuplicate())
		}
		if i == 0 {
			first = resp.GetEvent()
			continue
		}
		if resp.GetEvent().GetId() != first.GetId() || resp.GetEvent().GetPayload() != first.GetPayload() ||
			resp.GetEvent().GetIdempotencyKey() != "upl_9/progress/10" || resp.GetEvent().GetDeliveryCount() != 2 {
			t.Errorf("publish %d answered %v, want the original %v", i+1, resp.GetEvent(), first)
		}
	}
	if keys := e.eventKeys(t); len(keys) != 1 {
		t.Errorf("event keys %v, want one", keys)
	}
	calls := e.dlv.calls()
	if len(calls) != 1 {
		t.Fatalf("%d Schedule calls, want 1", len(calls))
	}
	var items []string
	for _, it := range calls[0].GetItems() {
		items = append(items, it.GetEventId()+"->"+it.GetEndpointId())
	}
	if want := []string{first.GetId() + "->ep_1", first.GetId() + "->ep_2"}; !slices.Equal(items, want) {
		t.Errorf("Schedule items %v, want %v", items, want)
	}
	if owner, ok, err := e.index.Owner(t.Context(), acct, "upl_9/progress/10", time.Now()); owner != first.GetId() || !ok || err != nil {
		t.Errorf("idempotency key owner %q %v %v", owner, ok, err)
	}

	// The same key in another account is another event.
	other := ids.New(ids.Account, time.Now())
	resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: other, Type: "transcription.progress", IdempotencyKey: "upl_9/progress/10",
		Data: sample(t, "transcription.progress"),
	})
	if err != nil || resp.GetDuplicate() || resp.GetEvent().GetId() == first.GetId() {
		t.Errorf("other account: %v, %v", resp, err)
	}
}

func TestProducerChosenIDActsAsIdempotencyKey(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.Subscribe(acct, "upload.completed", "ep_1")
	id := ids.New(ids.Event, time.Now())
	for i := range 2 {
		resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
			AccountId: acct, Id: id, Type: "upload.completed", Data: sample(t, "upload.completed"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetEvent().GetId() != id || resp.GetDuplicate() != (i == 1) {
			t.Errorf("publish %d: %v duplicate %v", i+1, resp.GetEvent().GetId(), resp.GetDuplicate())
		}
	}
	// The same id with a new idempotency key is still that event.
	resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: acct, Id: id, IdempotencyKey: "fresh", Type: "upload.completed", Data: sample(t, "upload.completed"),
	})
	if err != nil || !resp.GetDuplicate() || resp.GetEvent().GetId() != id {
		t.Errorf("same id, new key: %v, %v", resp, err)
	}
	// Another account may not take over the id.
	_, err = e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: ids.New(ids.Account, time.Now()), Id: id, Type: "upload.completed", Data: sample(t, "upload.completed"),
	})
	grpctest.RequireCode(t, err, codes.AlreadyExists, "id")
	if n := len(e.dlv.calls()); n != 1 {
		t.Errorf("%d Schedule calls, want 1", n)
	}
	if se, _ := e.store.Get(t.Context(), id); se == nil || se.AccountID != acct {
		t.Errorf("event now %+v", se)
	}
}

func TestFailedSchedulingIsNotAcknowledgedAndARetryFinishes(t *testing.T) {
	e := newEnv(t, options{})
	acct, custCtx := e.customer(t)
	e.reg.Subscribe(acct, "transcription.failed", "ep_1", "ep_2")
	req := &ingestionv1.PublishEventRequest{
		AccountId: acct, Type: "transcription.failed", IdempotencyKey: "job-42-failed",
		Data: sample(t, "transcription.failed"),
	}

	e.dlv.failNext(1)
	_, err := e.client.PublishEvent(t.Context(), req)
	grpctest.RequireCode(t, err, codes.Unavailable, "scheduling deliveries")
	keys := e.eventKeys(t)
	if len(keys) != 1 {
		t.Fatalf("event keys after the failure: %v", keys)
	}
	id := strings.TrimPrefix(keys[0], "wh:evt:")
	if se, _ := e.store.Get(t.Context(), id); se == nil || se.FanoutDone {
		t.Fatalf("stored event %+v: want stored, fan-out not done", se)
	}
	// Not acknowledged, so customers do not see it yet.
	_, err = e.client.GetEvent(custCtx, &ingestionv1.GetEventRequest{Id: id})
	grpctest.RequireCode(t, err, codes.NotFound)

	resp, err := e.client.PublishEvent(t.Context(), req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if resp.GetEvent().GetId() != id || !resp.GetDuplicate() || resp.GetEvent().GetDeliveryCount() != 2 {
		t.Errorf("retry answered %v duplicate %v", resp.GetEvent(), resp.GetDuplicate())
	}
	if keys := e.eventKeys(t); len(keys) != 1 {
		t.Errorf("event keys after the retry: %v", keys)
	}
	calls := e.dlv.calls()
	if len(calls) != 1 || len(calls[0].GetItems()) != 2 || calls[0].GetItems()[0].GetEventId() != id {
		t.Fatalf("accepted Schedule calls %v", calls)
	}
	if _, err := e.client.GetEvent(custCtx, &ingestionv1.GetEventRequest{Id: id}); err != nil {
		t.Errorf("GetEvent after the retry: %v", err)
	}
	// A third call schedules nothing.
	if _, err := e.client.PublishEvent(t.Context(), req); err != nil || len(e.dlv.calls()) != 1 {
		t.Errorf("third publish: %v, %d Schedule calls", err, len(e.dlv.calls()))
	}
}

func TestClaimedKeyWithoutEventIsStoredUnderItsID(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.Subscribe(acct, "transcription.started", "ep_1")
	// A publish that died right after claiming its key.
	orphan := ids.New(ids.Event, time.Now())
	if err := e.redis.Client.Set(t.Context(), index.IdemKey(acct, "k1"), orphan, retention).Err(); err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: acct, Type: "transcription.started", IdempotencyKey: "k1", Data: sample(t, "transcription.started"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := resp.GetEvent()
	if ev.GetId() != orphan || resp.GetDuplicate() || !strings.HasPrefix(ev.GetPayload(), `{"id":"`+orphan+`"`) {
		t.Errorf("got %v duplicate %v, want a new event %s", ev, resp.GetDuplicate(), orphan)
	}
	if calls := e.dlv.calls(); len(calls) != 1 || calls[0].GetItems()[0].GetEventId() != orphan {
		t.Errorf("Schedule calls %v", calls)
	}
}

func TestPublishEventsBatch(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.Subscribe(acct, "transcription.progress", "ep_1", "ep_2")
	e.reg.Subscribe(acct, "upload.completed", "ep_1")
	batch := []*ingestionv1.PublishEventRequest{
		{AccountId: acct, Type: "transcription.progress", Data: sample(t, "transcription.progress", "percentage", 10.0)},
		{AccountId: acct, Type: "upload.completed", Data: sample(t, "upload.completed")},
		{AccountId: acct, Type: "transcription.progress", Data: sample(t, "transcription.progress", "percentage", 20.0)},
	}

	// One invalid event rejects the batch, naming it; nothing is stored.
	bad := slices.Clone(batch)
	bad[1] = &ingestionv1.PublishEventRequest{AccountId: acct, Type: "upload.completed", Data: sample(t, "upload.completed", "size", -5.0)}
	_, err := e.client.PublishEvents(t.Context(), &ingestionv1.PublishEventsRequest{Events: bad})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "events[1].data.size")
	if n := e.dbsize(t); n != 0 || len(e.reg.ListSubscribersCalls()) != 0 {
		t.Fatalf("after a rejected batch: DBSIZE %d, %d registry calls", n, len(e.reg.ListSubscribersCalls()))
	}
	_, err = e.client.PublishEvents(t.Context(), &ingestionv1.PublishEventsRequest{})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "events: ")
	tooMany := make([]*ingestionv1.PublishEventRequest, 501)
	for i := range tooMany {
		tooMany[i] = batch[0]
	}
	_, err = e.client.PublishEvents(t.Context(), &ingestionv1.PublishEventsRequest{Events: tooMany})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "events: ", "501")

	resp, err := e.client.PublishEvents(t.Context(), &ingestionv1.PublishEventsRequest{Events: batch})
	if err != nil {
		t.Fatal(err)
	}
	res := resp.GetResults()
	if len(res) != 3 {
		t.Fatalf("%d results", len(res))
	}
	for i, r := range res {
		if r.GetEvent().GetType() != batch[i].GetType() || r.GetDuplicate() {
			t.Errorf("result %d: %v", i, r)
		}
	}
	if res[0].GetEvent().GetData().GetFields()["percentage"].GetNumberValue() != 10 || res[2].GetEvent().GetData().GetFields()["percentage"].GetNumberValue() != 20 {
		t.Error("results are not in request order")
	}
	if got := e.reg.ListSubscribersCalls(); len(got) != 2 {
		t.Errorf("ListSubscribers calls %v, want one per (account, type)", got)
	}
	calls := e.dlv.calls()
	if len(calls) != 2 {
		t.Fatalf("%d Schedule calls, want one per (account, type)", len(calls))
	}
	items := map[string][]string{}
	for _, c := range calls {
		for _, it := range c.GetItems() {
			items[c.GetEventType()] = append(items[c.GetEventType()], it.GetEventId()+"->"+it.GetEndpointId())
		}
	}
	p0, p2, u1 := res[0].GetEvent().GetId(), res[2].GetEvent().GetId(), res[1].GetEvent().GetId()
	if want := []string{p0 + "->ep_1", p0 + "->ep_2", p2 + "->ep_1", p2 + "->ep_2"}; !slices.Equal(items["transcription.progress"], want) {
		t.Errorf("progress items %v, want %v", items["transcription.progress"], want)
	}
	if want := []string{u1 + "->ep_1"}; !slices.Equal(items["upload.completed"], want) {
		t.Errorf("upload items %v, want %v", items["upload.completed"], want)
	}
	if res[0].GetEvent().GetDeliveryCount() != 2 || res[1].GetEvent().GetDeliveryCount() != 1 {
		t.Errorf("delivery counts %d %d", res[0].GetEvent().GetDeliveryCount(), res[1].GetEvent().GetDeliveryCount())
	}
	if keys := e.eventKeys(t); len(keys) != 3 {
		t.Errorf("event keys %v", keys)
	}
}

func TestPublishEventsDuplicates(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.Subscribe(acct, "transcription.started", "ep_1")
	earlier, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: acct, Type: "transcription.started", IdempotencyKey: "old", Data: sample(t, "transcription.started"),
	})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(key string) *ingestionv1.PublishEventRequest {
		return &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.started", IdempotencyKey: key, Data: sample(t, "transcription.started")}
	}
	resp, err := e.client.PublishEvents(t.Context(), &ingestionv1.PublishEventsRequest{
		Events: []*ingestionv1.PublishEventRequest{mk("a"), mk("old"), mk("a"), mk("")},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.GetResults()
	if r[0].GetDuplicate() || !r[1].GetDuplicate() || !r[2].GetDuplicate() || r[3].GetDuplicate() {
		t.Errorf("duplicate flags %v %v %v %v", r[0].GetDuplicate(), r[1].GetDuplicate(), r[2].GetDuplicate(), r[3].GetDuplicate())
	}
	if r[1].GetEvent().GetId() != earlier.GetEvent().GetId() || r[2].GetEvent().GetId() != r[0].GetEvent().GetId() || r[3].GetEvent().GetId() == r[0].GetEvent().GetId() {
		t.Errorf("ids %s %s %s %s (earlier %s)", r[0].GetEvent().GetId(), r[1].GetEvent().GetId(), r[2].GetEvent().GetId(), r[3].GetEvent().GetId(), earlier.GetEvent().GetId())
	}
	calls := e.dlv.calls()
	if len(calls) != 2 || len(calls[1].GetItems()) != 2 {
		t.Fatalf("Schedule calls %v: want the earlier one and one with the 2 new events", calls)
	}
	if keys := e.eventKeys(t); len(keys) != 3 {
		t.Errorf("event keys %v, want 3", keys)
	}
}

func TestAuthentication(t *testing.T) {
	pub := &ingestionv1.PublishEventRequest{Type: "credits.low"}
	t.Run("producer token required", func(t *testing.T) {
		e := newEnv(t, options{producerToken: "p-secret"})
		pub.AccountId, pub.Data = ids.New(ids.Account, time.Now()), sample(t, "credits.low")
		_, err := e.client.PublishEvent(t.Context(), pub)
		grpctest.RequireCode(t, err, codes.Unauthenticated, "PRODUCER_TOKEN")
		_, err = e.client.PublishEvent(withToken(t.Context(), "wrong"), pub)
		grpctest.RequireCode(t, err, codes.Unauthenticated)
		_, err = e.client.PublishEvents(withToken(t.Context(), "wrong"), &ingestionv1.PublishEventsRequest{Events: []*ingestionv1.PublishEventRequest{pub}})
		grpctest.RequireCode(t, err, codes.Unauthenticated)
		_, err = e.client.ReportCreditBalance(t.Context(), &ingestionv1.ReportCreditBalanceRequest{AccountId: pub.AccountId})
		grpctest.RequireCode(t, err, codes.Unauthenticated)
		if n := e.dbsize(t); n != 0 {
			t.Fatalf("DBSIZE %d after refused calls", n)
		}
		resp, err := e.client.PublishEvent(withToken(t.Context(), "p-secret"), pub)
		if err != nil || resp.GetEvent().GetId() == "" {
			t.Fatalf("with the token: %v, %v", resp, err)
		}
		// The producer token is no customer key.
		_, err = e.client.GetEvent(withToken(t.Context(), "p-secret"), &ingestionv1.GetEventRequest{Id: resp.GetEvent().GetId()})
		grpctest.RequireCode(t, err, codes.Unauthenticated)
		_, err = e.client.ListEvents(t.Context(), &ingestionv1.ListEventsRequest{})
		grpctest.RequireCode(t, err, codes.Unauthenticated)
	})
	t.Run("REST publishing off without a token", func(t *testing.T) {
		e := newEnv(t, options{})
		pub.AccountId, pub.Data = ids.New(ids.Account, time.Now()), sample(t, "credits.low")
		ctx := metadata.AppendToOutgoingContext(t.Context(), authn.GatewayMetadata, "1")
		_, err := e.client.PublishEvent(ctx, pub)
		grpctest.RequireCode(t, err, codes.PermissionDenied, "PRODUCER_TOKEN")
		if n := e.dbsize(t); n != 0 {
			t.Fatalf("DBSIZE %d after a refused call", n)
		}
		// Internal gRPC producers need no token then.
		if _, err := e.client.PublishEvent(t.Context(), pub); err != nil {
			t.Fatal(err)
		}
	})
}

func TestGetEventOfAnotherAccountIsNotFound(t *testing.T) {
	e := newEnv(t, options{})
	acctA, ctxA := e.customer(t)
	_, ctxB := e.customer(t)
	resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: acctA, Type: "transcription.started", Data: sample(t, "transcription.started"),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetEvent().GetId()
	if _, err := e.client.GetEvent(ctxA, &ingestionv1.GetEventRequest{Id: id}); err != nil {
		t.Fatalf("owner: %v", err)
	}
	_, err = e.client.GetEvent(ctxB, &ingestionv1.GetEventRequest{Id: id})
	grpctest.RequireCode(t, err, codes.NotFound, id)
	_, err = e.client.GetEvent(ctxA, &ingestionv1.GetEventRequest{Id: "evt_nope"})
	grpctest.RequireCode(t, err, codes.NotFound)
	_, err = e.client.GetEvent(withToken(t.Context(), "vsk_unknown"), &ingestionv1.GetEventRequest{Id: id})
	grpctest.RequireCode(t, err, codes.Unauthenticated)
}

func TestListEvents(t *testing.T) {
	e := newEnv(t, options{})
	acct, ctx := e.customer(t)
	other, otherCtx := e.customer(t)
	publish := func(acct, eventType, upload string) string {
		t.Helper()
		resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
			AccountId: acct, Type: eventType, Data: sample(t, eventType, "uploadId", upload),
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct creation times
		return resp.GetEvent().GetId()
	}
	s1 := publish(acct, "transcription.started", "upl_1")
	p1 := publish(acct, "transcription.progress", "upl_1")
	s2 := publish(acct, "transcription.started", "upl_2")
	c1 := publish(acct, "transcription.completed", "upl_1")
	o1 := publish(other, "transcription.started", "upl_1")

	list := func(ctx context.Context, req *ingestionv1.ListEventsRequest) ([]string, string) {
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
	for _, tc := range []struct {
		name string
		req  *ingestionv1.ListEventsRequest
		want []string
	}{
		{"all, newest first", &ingestionv1.ListEventsRequest{}, []string{c1, s2, p1, s1}},
		{"by type", &ingestionv1.ListEventsRequest{Type: "transcription.started"}, []string{s2, s1}},
		{"by upload", &ingestionv1.ListEventsRequest{UploadId: "upl_1"}, []string{c1, p1, s1}},
		{"by type and upload", &ingestionv1.ListEventsRequest{Type: "transcription.started", UploadId: "upl_2"}, []string{s2}},
		{"no match", &ingestionv1.ListEventsRequest{UploadId: "upl_9"}, nil},
	} {
		if got, next := list(ctx, tc.req); !slices.Equal(got, tc.want) || next != "" {
			t.Errorf("%s: %v next %q, want %v", tc.name, got, next, tc.want)
		}
	}
	if got, _ := list(otherCtx, &ingestionv1.ListEventsRequest{}); !slices.Equal(got, []string{o1}) {
		t.Errorf("other account sees %v", got)
	}

	// Pages of two, filtered.
	got, next := list(ctx, &ingestionv1.ListEventsRequest{UploadId: "upl_1", PageSize: 2})
	if !slices.Equal(got, []string{c1, p1}) || next == "" {
		t.Fatalf("page 1: %v next %q", got, next)
	}
	got, next = list(ctx, &ingestionv1.ListEventsRequest{UploadId: "upl_1", PageSize: 2, PageToken: next})
	if !slices.Equal(got, []string{s1}) || next != "" {
		t.Errorf("page 2: %v next %q", got, next)
	}

	_, err := e.client.ListEvents(ctx, &ingestionv1.ListEventsRequest{PageToken: "garbage"})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "page_token")
	_, err = e.client.ListEvents(ctx, &ingestionv1.ListEventsRequest{Type: "nope"})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "type")
	_, err = e.client.ListEvents(ctx, &ingestionv1.ListEventsRequest{PageSize: -1})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "page_size")
}

func TestListEventsPagesThroughOneMillisecond(t *testing.T) {
	e := newEnv(t, options{})
	acct, ctx := e.customer(t)
	// A batch is stored with one creation time: 230 events in one ms.
	var reqs []*ingestionv1.PublishEventRequest
	for i := range 230 {
		reqs = append(reqs, &ingestionv1.PublishEventRequest{
			AccountId: acct, Type: "transcription.retry", Data: sample(t, "transcription.retry", "attempt", float64(i+1)),
		})
	}
	resp, err := e.client.PublishEvents(t.Context(), &ingestionv1.PublishEventsRequest{Events: reqs})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, r := range resp.GetResults() {
		want[r.GetEvent().GetId()] = true
	}
	seen := map[string]bool{}
	token, pages := "", 0
	for {
		page, err := e.client.ListEvents(ctx, &ingestionv1.ListEventsRequest{PageSize: 7, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, ev := range page.GetEvents() {
			if seen[ev.GetId()] {
				t.Fatalf("%s listed twice", ev.GetId())
			}
			seen[ev.GetId()] = true
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(seen) != len(want) || pages != 33 {
		t.Errorf("listed %d of %d events in %d pages", len(seen), len(want), pages)
	}
	// Page size defaults to 50 and is capped at 100.
	for size, n := range map[int32]int{0: 50, 1000: 100} {
		page, err := e.client.ListEvents(ctx, &ingestionv1.ListEventsRequest{PageSize: size})
		if err != nil || len(page.GetEvents()) != n {
			t.Errorf("page_size %d: %d events, %v", size, len(page.GetEvents()), err)
		}
	}
}

func BenchmarkPublish(b *testing.B) {
	e := newEnv(b, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.Subscribe(acct, "transcription.completed", "ep_1", "ep_2", "ep_3")
	req := &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: sample(b, "transcription.completed")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		req.IdempotencyKey = fmt.Sprintf("bench-%d", i)
		if _, err := e.client.PublishEvent(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
