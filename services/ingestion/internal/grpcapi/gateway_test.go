package grpcapi_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
)

// PublishEach, the gateway's gathered REST publishes: each item gets the
// answer its own PublishEvent would (event, validation error with its
// field, idempotency outcome), in its own trace, and the items share their
// writes as one group.
func TestPublishEachAnswersEveryEventAsItsOwnPublish(t *testing.T) {
	e := newEnv(t, options{producerToken: "p-secret"})
	acct, _ := e.customer(t)
	e.reg.Subscribe(acct, "transcription.started", "ep_a")
	ctx := withToken(t.Context(), "p-secret")
	item := func(n int) *ingestionv1.PublishEachItem {
		return &ingestionv1.PublishEachItem{
			Request: &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.started",
				Data: sample(t, "transcription.started", "uploadId", fmt.Sprintf("upl_%d", n))},
			Traceparent: fmt.Sprintf("00-%032x-00f067aa0ba902b7-01", 0xfeed00+n),
		}
	}
	var items []*ingestionv1.PublishEachItem
	kind := map[int]string{}
	for i := range 40 {
		kind[len(items)] = "new"
		items = append(items, item(i))
	}
	for i := range 5 {
		it := item(100 + i)
		it.Request.Data = sample(t, "transcription.started", "engine", deleted)
		kind[len(items)] = "invalid"
		items = append(items, it)
	}
	for i := range 5 {
		it := item(200 + i)
		it.Request.IdempotencyKey = "job-1"
		kind[len(items)] = "keyed"
		items = append(items, it)
	}

	resp, err := e.gateway.PublishEach(ctx, &ingestionv1.PublishEachRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != len(items) {
		t.Fatalf("%d results for %d items", len(resp.GetResults()), len(items))
	}
	stored := map[string]bool{}
	keyed := map[string]int{}
	originals := 0
	for i, r := range resp.GetResults() {
		ev := r.GetResponse().GetEvent()
		switch kind[i] {
		case "new":
			want := strings.Split(items[i].GetTraceparent(), "-")[1]
			if r.GetCode() != 0 || r.GetResponse().GetDuplicate() || ev.GetTraceId() != want ||
				ev.GetData().GetFields()["uploadId"].GetStringValue() != fmt.Sprintf("upl_%d", i) {
				t.Errorf("item %d: %v; want its own new event in trace %s", i, r, want)
			}
			stored[ev.GetId()] = true
		case "invalid":
			err := status.ErrorProto(&spb.Status{Code: r.GetCode(), Message: r.GetMessage(), Details: r.GetDetails()})
			grpctest.CheckCode(t, err, codes.InvalidArgument, "engine")
			var field string
			for _, d := range status.Convert(err).Details() {
				if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
					field = br.GetFieldViolations()[0].GetField()
				}
			}
			if !strings.Contains(field, "engine") || r.GetResponse() != nil {
				t.Errorf("item %d: field violation %q, response %v; want the field named, no event", i, field, r.GetResponse())
			}
		case "keyed":
			if r.GetCode() != 0 {
				t.Errorf("item %d: %v", i, r)
				continue
			}
			keyed[ev.GetId()]++
			if !r.GetResponse().GetDuplicate() {
				originals++
			}
			stored[ev.GetId()] = true
		}
	}
	if len(keyed) != 1 || originals != 1 {
		t.Errorf("5 repeats of one key: events %v, %d originals; want one event, one original", keyed, originals)
	}
	if got := len(e.eventKeys(t)); got != len(stored) {
		t.Errorf("%d events stored, want %d", got, len(stored))
	}
	// One group: 41 events of one account in one Schedule call, each
	// delivery in the trace of its own item.
	if n := len(e.dlv.calls()); n != 1 {
		t.Errorf("%d Schedule calls for one PublishEach of %d events, want 1 (one group)", n, len(stored))
	}
	traces := map[string]bool{}
	for _, it := range e.dlv.items {
		traces[strings.Split(it.GetTraceParent(), "-")[1]] = true
	}
	for i, it := range items {
		if kind[i] == "new" && !traces[strings.Split(it.GetTraceparent(), "-")[1]] {
			t.Errorf("item %d: no delivery scheduled in its trace", i)
		}
	}
}

func TestPublishEachRefusesWhatItCannotServe(t *testing.T) {
	e := newEnv(t, options{producerToken: "p-secret"})
	acct, _ := e.customer(t)
	one := &ingestionv1.PublishEachItem{Request: &ingestionv1.PublishEventRequest{AccountId: acct, Type: "credits.low", Data: sample(t, "credits.low")}}
	_, err := e.gateway.PublishEach(withToken(t.Context(), "wrong"), &ingestionv1.PublishEachRequest{Items: []*ingestionv1.PublishEachItem{one}})
	grpctest.RequireCode(t, err, codes.Unauthenticated, "PRODUCER_TOKEN")
	ctx := withToken(t.Context(), "p-secret")
	_, err = e.gateway.PublishEach(ctx, &ingestionv1.PublishEachRequest{})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "items")
	many := make([]*ingestionv1.PublishEachItem, 501)
	for i := range many {
		many[i] = one
	}
	_, err = e.gateway.PublishEach(ctx, &ingestionv1.PublishEachRequest{Items: many})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "items")
	if n := e.dbsize(t); n != 0 {
		t.Fatalf("DBSIZE %d after refused calls", n)
	}
}

// TestPublishEachLeavesOutOnlyTheCallersOwnData: with omit_echoed_data a
// new event's answer leaves out the data its item sent (and says so),
// while a repeat answers with the stored event's data and an item with a
// -0 with the stored 0; without the field every answer carries its data.
func TestPublishEachLeavesOutOnlyTheCallersOwnData(t *testing.T) {
	e := newEnv(t, options{producerToken: "p-secret"})
	acct, _ := e.customer(t)
	ctx := withToken(t.Context(), "p-secret")
	item := func(key string, kv ...any) *ingestionv1.PublishEachItem {
		return &ingestionv1.PublishEachItem{Request: &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.progress",
			IdempotencyKey: key, Data: sample(t, "transcription.progress", kv...)}}
	}
	if _, err := e.gateway.PublishEach(ctx, &ingestionv1.PublishEachRequest{Items: []*ingestionv1.PublishEachItem{item("first", "percentage", 10)}}); err != nil {
		t.Fatal(err)
	}
	for _, omit := range []bool{true, false} {
		resp, err := e.gateway.PublishEach(ctx, &ingestionv1.PublishEachRequest{OmitEchoedData: omit, Items: []*ingestionv1.PublishEachItem{
			item(fmt.Sprint("new-", omit), "percentage", 20),
			item("first", "percentage", 30), // a repeat: the stored 10
			item(fmt.Sprint("zero-", omit), "percentage", math.Copysign(0, -1)),
		}})
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []struct {
			omitted    bool
			percentage float64
		}{{omit, 20}, {false, 10}, {false, 0}} {
			r := resp.GetResults()[i]
			data := r.GetResponse().GetEvent().GetData()
			got := data.GetFields()["percentage"].GetNumberValue()
			switch {
			case r.GetCode() != 0:
				t.Errorf("omit %v, item %d: %v", omit, i, r)
			case r.GetDataOmitted() != want.omitted || (data == nil) != want.omitted:
				t.Errorf("omit %v, item %d: data_omitted %v, data %v; want omitted %v", omit, i, r.GetDataOmitted(), data, want.omitted)
			case !want.omitted && (got != want.percentage || math.Signbit(got)):
				t.Errorf("omit %v, item %d: percentage %v, want %v", omit, i, got, want.percentage)
			}
		}
	}
}
