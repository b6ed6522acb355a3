package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/autobatch"
)

const (
	// maxGatherBytes bounds the items of one PublishEach call, below
	// gRPC's default limit of 4 MiB on a received message.
	maxGatherBytes = 3 << 20
	// publishTimeout bounds one PublishEach call. It serves many
	// requests, so it runs under none of theirs; ingestion's own group
	// deadline (15 s) ends first.
	publishTimeout = 30 * time.Second
)

// publishHandler serves POST /v1/events, the producers' hot path, without
// the transcoding mux: it decodes the body once with the mux's own
// marshaler (the same proto3 JSON rules and error messages), publishes it
// through the publisher and answers in the same format, errors included
// (google.rpc Status JSON through the mux's error handler). What it leaves
// out is per-request work nobody reads here: the annotated incoming
// context (x-forwarded-* and grpcgateway-* metadata), the header and
// trailer capture and the response-forwarding options. The route is the
// one in ingestion.proto; the mux still serves it when this handler is not
// mounted.
func publishHandler(mux *runtime.ServeMux, m runtime.Marshaler, p *publisher) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		fail := func(err error) { runtime.HTTPError(ctx, mux, m, w, r, err) }
		body, err := io.ReadAll(r.Body)
		if err != nil {
			fail(status.Errorf(codes.InvalidArgument, "%v", err))
			return
		}
		var req ingestionv1.PublishEventRequest
		if len(body) > 0 {
			if err := m.Unmarshal(body, &req); err != nil && !errors.Is(err, io.EOF) {
				fail(status.Errorf(codes.InvalidArgument, "%v", err))
				return
			}
		}
		resp, err := p.publish(ctx, r.Header.Get("Authorization"), &req)
		if err != nil {
			fail(err)
			return
		}
		out, err := m.Marshal(resp)
		if err != nil {
			fail(status.Errorf(codes.Internal, "%v", err))
			return
		}
		w.Header().Set("Content-Type", m.ContentType(resp))
		_, _ = w.Write(out)
	})
}

// publisher gathers the single publishes in flight together into
// PublishEach calls (pkg/autobatch: a lone publish goes out at once, the
// ones that arrive while calls are on the wire go in the next one), which
// saves a gRPC call per request here and in ingestion. Each request keeps
// what it had with a PublishEvent of its own: its credential (requests
// with different Authorization headers never share a call), its trace
// context, and its own answer or error; a failed call fails each of its
// requests with that call's error. An ingestion that does not serve
// PublishEach yet (an older build, during a rolling upgrade) answers
// Unimplemented: the requests of that call then go as PublishEvent calls
// of their own, as before.
type publisher struct {
	client  ingestionv1.GatewayPublishServiceClient
	single  ingestionv1.IngestionServiceClient
	batches *autobatch.Batcher[gathered, *ingestionv1.PublishEventResponse]
}

// gathered is one request waiting for its call.
type gathered struct {
	auth   string            // the request's Authorization header, forwarded
	caller trace.SpanContext // the request's span
	item   *ingestionv1.PublishEachItem
}

func newPublisher(cc grpc.ClientConnInterface) *publisher {
	p := &publisher{client: ingestionv1.NewGatewayPublishServiceClient(cc), single: ingestionv1.NewIngestionServiceClient(cc)}
	p.batches = autobatch.New(autobatch.DefaultMax, autobatch.DefaultSenders, publishTimeout, p.send)
	return p
}

// publish publishes one request's event with the requests in flight with it.
func (p *publisher) publish(ctx context.Context, auth string, req *ingestionv1.PublishEventRequest) (*ingestionv1.PublishEventResponse, error) {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	resp, err := p.batches.Do(ctx, gathered{auth: auth, caller: trace.SpanContextFromContext(ctx), item: &ingestionv1.PublishEachItem{
		Request: req, Traceparent: carrier.Get("traceparent"), Tracestate: carrier.Get("tracestate"),
	}})
	if ctxErr := ctx.Err(); err != nil && ctxErr != nil && errors.Is(err, ctxErr) {
		return nil, status.FromContextError(ctxErr).Err()
	}
	return resp, err
}

// send publishes a batch of requests (autobatch.Func): one PublishEach
// call per credential and maxGatherBytes of items, all at once.
func (p *publisher) send(ctx context.Context, batch []gathered) ([]*ingestionv1.PublishEventResponse, []error) {
	res := make([]*ingestionv1.PublishEventResponse, len(batch))
	errs := make([]error, len(batch))
	cs := calls(batch)
	if len(cs) == 1 { // the usual case: on this goroutine, whose stack has grown already
		p.call(ctx, batch, cs[0], res, errs)
		return res, errs
	}
	var wg sync.WaitGroup
	for _, members := range cs {
		wg.Go(func() { p.call(ctx, batch, members, res, errs) })
	}
	wg.Wait()
	return res, errs
}

// calls splits a batch into the requests of each call, by index, in order:
// one credential per call, at most maxGatherBytes of items (a larger item
// goes alone).
func calls(batch []gathered) [][]int {
	type open struct {
		call  int // index into out
		bytes int
	}
	var out [][]int
	byAuth := map[string]open{}
	for i, g := range batch {
		size := proto.Size(g.item)
		o, ok := byAuth[g.auth]
		if !ok || o.bytes+size > maxGatherBytes {
			o = open{call: len(out)}
			out = append(out, nil)
		}
		out[o.call] = append(out[o.call], i)
		o.bytes += size
		byAuth[g.auth] = o
	}
	return out
}

// call makes one PublishEach call for batch's members (one credential) and
// sets their results or errors. The call runs in its first request's
// trace.
func (p *publisher) call(ctx context.Context, batch []gathered, members []int, res []*ingestionv1.PublishEventResponse, errs []error) {
	first := batch[members[0]]
	md := metadata.Pairs(authn.GatewayMetadata, "1")
	if first.auth != "" {
		md.Set("authorization", first.auth)
	}
	if first.caller.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, first.caller)
	}
	req := &ingestionv1.PublishEachRequest{Items: make([]*ingestionv1.PublishEachItem, len(members)), OmitEchoedData: true}
	for k, i := range members {
		req.Items[k] = batch[i].item
	}
	resp, err := p.client.PublishEach(metadata.NewOutgoingContext(ctx, md), req)
	if status.Code(err) == codes.Unimplemented {
		p.each(ctx, md, batch, members, res, errs)
		return
	}
	if err == nil && len(resp.GetResults()) != len(members) {
		err = status.Errorf(codes.Internal, "ingestion answered %d results for %d events", len(resp.GetResults()), len(members))
	}
	for k, i := range members {
		if err != nil {
			errs[i] = err
			continue
		}
		r := resp.GetResults()[k]
		if r.GetResponse() != nil {
			res[i] = r.GetResponse()
			if r.GetDataOmitted() {
				res[i].GetEvent().Data = echoedData(batch[i].item.GetRequest())
			}
			continue
		}
		errs[i] = status.ErrorProto(&spb.Status{Code: r.GetCode(), Message: r.GetMessage(), Details: r.GetDetails()})
	}
}

// echoedData is the data of a new event published by req, which PublishEach
// leaves out of its answer (omit_echoed_data): req's own, as PublishEvent
// would have answered it.
func echoedData(req *ingestionv1.PublishEventRequest) *structpb.Struct {
	if d := req.GetData(); d != nil {
		return d
	}
	return &structpb.Struct{}
}

// each publishes batch's members with a PublishEvent call each, at once,
// every call in its own request's trace: the path to an ingestion that
// does not serve PublishEach.
func (p *publisher) each(ctx context.Context, md metadata.MD, batch []gathered, members []int, res []*ingestionv1.PublishEventResponse, errs []error) {
	var wg sync.WaitGroup
	for _, i := range members {
		wg.Go(func() {
			cctx := ctx
			if sc := batch[i].caller; sc.IsValid() {
				cctx = trace.ContextWithSpanContext(ctx, sc)
			}
			res[i], errs[i] = p.single.PublishEvent(metadata.NewOutgoingContext(cctx, md), batch[i].item.GetRequest())
		})
	}
	wg.Wait()
}
