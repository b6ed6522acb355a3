package grpcapi

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// GatewayServer implements ingestionv1.GatewayPublishServiceServer: the
// single REST publishes that the gateway gathers into one call.
type GatewayServer struct {
	ingestionv1.UnimplementedGatewayPublishServiceServer
	s      *Server
	tracer trace.Tracer
}

var _ ingestionv1.GatewayPublishServiceServer = (*GatewayServer)(nil)

// PublishEach implements ingestionv1.GatewayPublishServiceServer: the
// items are published as one group (ingest.Service.PublishEach), each under
// a server span named like PublishEvent's, a child of the item's trace
// context and linked to this call's span, and each answered with what its
// PublishEvent would have answered (less the data the caller sent, when it
// asks for that with omit_echoed_data).
func (g *GatewayServer) PublishEach(ctx context.Context, req *ingestionv1.PublishEachRequest) (*ingestionv1.PublishEachResponse, error) {
	items := req.GetItems()
	if n := len(items); n == 0 || n > ingest.MaxBatch {
		return nil, apierr.Invalid("items", "must hold 1 to %d events, got %d", ingest.MaxBatch, n)
	}
	call := trace.LinkFromContext(ctx)
	ctxs := make([]context.Context, len(items))
	spans := make([]trace.Span, len(items))
	rs := make([]ingest.Request, len(items))
	for i, it := range items {
		ctxs[i], spans[i] = g.span(ctx, it, call)
		rs[i] = request(it.GetRequest())
	}
	res, errs := g.s.svc.PublishEach(ctxs, rs)
	out := &ingestionv1.PublishEachResponse{Results: make([]*ingestionv1.PublishEachResult, len(items))}
	for i, it := range items {
		var resp *ingestionv1.PublishEventResponse
		var omitted bool
		err := errs[i]
		if err == nil {
			resp, omitted, err = g.s.result(res[i], it.GetRequest().GetData(), req.GetOmitEchoedData())
		}
		out.Results[i] = g.answer(ctxs[i], spans[i], resp, err)
		out.Results[i].DataOmitted = omitted
	}
	return out, nil
}

// span starts an item's PublishEvent span in the item's trace.
func (g *GatewayServer) span(ctx context.Context, it *ingestionv1.PublishEachItem, call trace.Link) (context.Context, trace.Span) {
	carrier := propagation.MapCarrier{}
	if tp := it.GetTraceparent(); tp != "" {
		carrier["traceparent"] = tp
		carrier["tracestate"] = it.GetTracestate()
	}
	ctx = propagation.TraceContext{}.Extract(ctx, carrier)
	return g.tracer.Start(ctx, ingestionv1.IngestionService_PublishEvent_FullMethodName[1:],
		trace.WithSpanKind(trace.SpanKindServer), trace.WithLinks(call),
		trace.WithAttributes(attribute.String("rpc.system", "grpc"),
			attribute.String("rpc.service", ingestionv1.IngestionService_ServiceDesc.ServiceName),
			attribute.String("rpc.method", "PublishEvent"),
			attribute.Bool("webhook.publish.gathered", true)))
}

// answer makes an item's result (its error as PublishEvent's interceptor
// would make it) and ends its span.
func (g *GatewayServer) answer(ctx context.Context, span trace.Span, resp *ingestionv1.PublishEventResponse, err error) *ingestionv1.PublishEachResult {
	defer span.End()
	if err == nil {
		span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(codes.OK)))
		return &ingestionv1.PublishEachResult{Response: resp}
	}
	st := status.Convert(apierr.Status(ctx, g.s.log, err)).Proto()
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(st.GetCode())))
	span.SetStatus(otelcodes.Error, st.GetMessage())
	return &ingestionv1.PublishEachResult{Code: st.GetCode(), Message: st.GetMessage(), Details: st.GetDetails()}
}

func newGatewayServer(s *Server) *GatewayServer {
	return &GatewayServer{s: s, tracer: otel.Tracer("github.com/voxscriber/webhooks/services/ingestion/internal/grpcapi")}
}
