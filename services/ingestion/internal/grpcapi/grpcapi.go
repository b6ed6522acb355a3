// Package grpcapi is the thin gRPC layer of the ingestion service: it
// translates requests to the ingest domain and events back to protobuf.
// Domain errors become status codes in serve's interceptor (pkg/apierr).
package grpcapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// Server implements ingestionv1.IngestionServiceServer.
type Server struct {
	ingestionv1.UnimplementedIngestionServiceServer
	svc         *ingest.Service
	jaegerUIURL string
	log         *slog.Logger
}

var _ ingestionv1.IngestionServiceServer = (*Server)(nil)

// New returns the gRPC server of svc; jaegerUIURL (may be empty) turns
// trace ids into links; log (may be nil) records the causes of internal
// errors that PublishEach answers per event.
func New(svc *ingest.Service, jaegerUIURL string, log *slog.Logger) *Server {
	return &Server{svc: svc, jaegerUIURL: jaegerUIURL, log: log}
}

// Register registers the ingestion services (serve.Service.Register):
// events, the gateway's gathered publishes, the suite's operational events
// and the delivery stats.
func (s *Server) Register(g *grpc.Server) {
	ingestionv1.RegisterIngestionServiceServer(g, s)
	ingestionv1.RegisterGatewayPublishServiceServer(g, newGatewayServer(s))
	ingestionv1.RegisterIngestionInternalServiceServer(g, &InternalServer{s: s})
	ingestionv1.RegisterStatsServiceServer(g, &Stats{svc: s.svc})
}

// Policy is who may call what: producers publish, customers read their
// own account's events, the suite's services publish operational events.
func Policy() authn.Policy {
	return authn.Policy{
		ingestionv1.IngestionService_PublishEvent_FullMethodName:               authn.Producer,
		ingestionv1.IngestionService_PublishEvents_FullMethodName:              authn.Producer,
		ingestionv1.GatewayPublishService_PublishEach_FullMethodName:           authn.Producer,
		ingestionv1.IngestionService_ReportCreditBalance_FullMethodName:        authn.Producer,
		ingestionv1.IngestionService_GetEvent_FullMethodName:                   authn.Customer,
		ingestionv1.IngestionService_ListEvents_FullMethodName:                 authn.Customer,
		ingestionv1.IngestionInternalService_PublishSystemEvent_FullMethodName: authn.Internal,
		ingestionv1.IngestionInternalService_EraseAccount_FullMethodName:       authn.Internal,
		ingestionv1.StatsService_GetDeliveryStats_FullMethodName:               authn.Customer,
	}
}

// Callers names, per internal method, the services that may call it when
// the suite runs on mutual TLS (authorised by the peer certificate).
func Callers() authn.Callers {
	return authn.Callers{
		ingestionv1.IngestionInternalService_PublishSystemEvent_FullMethodName: {"delivery"},
		ingestionv1.IngestionInternalService_EraseAccount_FullMethodName:       {"registry"},
	}
}

// InternalServer implements ingestionv1.IngestionInternalServiceServer:
// the suite's own operational events.
type InternalServer struct {
	ingestionv1.UnimplementedIngestionInternalServiceServer
	s *Server
}

var _ ingestionv1.IngestionInternalServiceServer = (*InternalServer)(nil)

// PublishSystemEvent implements ingestionv1.IngestionInternalServiceServer.
func (i *InternalServer) PublishSystemEvent(ctx context.Context, req *ingestionv1.PublishSystemEventRequest) (*ingestionv1.PublishSystemEventResponse, error) {
	var data map[string]any
	if req.GetData() != nil {
		data = req.GetData().AsMap()
	}
	res, err := i.s.svc.PublishSystem(ctx, ingest.SystemRequest{
		AccountID: req.GetAccountId(), Type: req.GetType(), Data: data,
		EndpointID: req.GetEndpointId(), IdempotencyKey: req.GetIdempotencyKey(),
	})
	if err != nil {
		return nil, err
	}
	e, err := i.s.event(res.Event)
	if err != nil {
		return nil, err
	}
	return &ingestionv1.PublishSystemEventResponse{Event: e, Duplicate: res.Duplicate}, nil
}

// PublishEvent implements ingestionv1.IngestionServiceServer.
func (s *Server) PublishEvent(ctx context.Context, req *ingestionv1.PublishEventRequest) (*ingestionv1.PublishEventResponse, error) {
	res, err := s.svc.Publish(ctx, request(req))
	if err != nil {
		return nil, err
	}
	resp, _, err := s.result(res, req.GetData(), false)
	return resp, err
}

// PublishEvents implements ingestionv1.IngestionServiceServer.
func (s *Server) PublishEvents(ctx context.Context, req *ingestionv1.PublishEventsRequest) (*ingestionv1.PublishEventsResponse, error) {
	if n := len(req.GetEvents()); n == 0 || n > ingest.MaxBatch {
		return nil, apierr.Invalid("events", "must hold 1 to %d events, got %d", ingest.MaxBatch, n)
	}
	rs := make([]ingest.Request, len(req.GetEvents()))
	for i, e := range req.GetEvents() {
		rs[i] = request(e)
	}
	results, err := s.svc.PublishBatch(ctx, rs)
	if err != nil {
		return nil, err
	}
	out := &ingestionv1.PublishEventsResponse{Results: make([]*ingestionv1.PublishEventResponse, len(results))}
	for i, r := range results {
		if out.Results[i], _, err = s.result(r, req.GetEvents()[i].GetData(), false); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// GetEvent implements ingestionv1.IngestionServiceServer.
func (s *Server) GetEvent(ctx context.Context, req *ingestionv1.GetEventRequest) (*ingestionv1.GetEventResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	e, err := s.svc.Get(ctx, acct, req.GetId())
	if err != nil {
		return nil, err
	}
	pe, err := s.event(e)
	if err != nil {
		return nil, err
	}
	return &ingestionv1.GetEventResponse{Event: pe}, nil
}

// ListEvents implements ingestionv1.IngestionServiceServer.
func (s *Server) ListEvents(ctx context.Context, req *ingestionv1.ListEventsRequest) (*ingestionv1.ListEventsResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	evs, next, err := s.svc.List(ctx, acct, ingest.ListQuery{
		Type: req.GetType(), UploadID: req.GetUploadId(),
		Since: timeOf(req.GetSince()), Until: timeOf(req.GetUntil()),
		PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	out := &ingestionv1.ListEventsResponse{Events: make([]*ingestionv1.Event, len(evs)), NextPageToken: next}
	for i, e := range evs {
		if out.Events[i], err = s.event(e); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReportCreditBalance implements ingestionv1.IngestionServiceServer.
func (s *Server) ReportCreditBalance(ctx context.Context, req *ingestionv1.ReportCreditBalanceRequest) (*ingestionv1.ReportCreditBalanceResponse, error) {
	e, err := s.svc.ReportCreditBalance(ctx, req.GetAccountId(), req.GetBalance())
	if err != nil {
		return nil, err
	}
	out := &ingestionv1.ReportCreditBalanceResponse{}
	if e != nil {
		if out.Event, err = s.event(e); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func request(r *ingestionv1.PublishEventRequest) ingest.Request {
	var data map[string]any
	if r.GetData() != nil {
		data = r.GetData().AsMap()
	}
	return ingest.Request{
		AccountID: r.GetAccountId(), Type: r.GetType(), Data: data,
		IdempotencyKey: r.GetIdempotencyKey(), ID: r.GetId(), OrderingKey: r.GetOrderingKey(),
	}
}

// result answers a publish whose request carried data. A new event's
// payload was made from that data, so the answer carries the caller's own
// Struct instead of decoding it back from the payload (every publish
// answers with its event: this is on the producers' hot path); a
// duplicate answers with the stored event's data. With omitEchoed a new
// event's answer leaves the caller's data out instead (the caller holds
// it: PublishEach's omit_echoed_data), and omitted says so.
func (s *Server) result(r ingest.Result, data *structpb.Struct, omitEchoed bool) (resp *ingestionv1.PublishEventResponse, omitted bool, err error) {
	echoed := !r.Duplicate && !hasNegativeZero(data) // else the stored data (the payload writes -0 as 0)
	switch {
	case !echoed:
		data = nil
	case data == nil || omitEchoed:
		data = &structpb.Struct{} // what decoding the payload's "data": {} gives
	}
	e, err := s.eventWith(r.Event, data)
	if err != nil {
		return nil, false, err
	}
	omitted = echoed && omitEchoed
	if omitted {
		e.Data = nil
	}
	return &ingestionv1.PublishEventResponse{Event: e, Duplicate: r.Duplicate}, omitted, nil
}

// hasNegativeZero tells whether a field of data is the number -0, which
// the payload writes as 0 (data fields are strings and numbers).
func hasNegativeZero(data *structpb.Struct) bool {
	for _, v := range data.GetFields() {
		if n, ok := v.GetKind().(*structpb.Value_NumberValue); ok && n.NumberValue == 0 && math.Signbit(n.NumberValue) {
			return true
		}
	}
	return false
}

// event converts a stored event; its data is read back from the exact
// payload.
func (s *Server) event(e *eventstore.Event) (*ingestionv1.Event, error) {
	return s.eventWith(e, nil)
}

// eventWith converts a stored event with its data, or, when data is nil,
// the data read back from its payload.
func (s *Server) eventWith(e *eventstore.Event, data *structpb.Struct) (*ingestionv1.Event, error) {
	if data == nil {
		// One pass of encoding/json over the payload (about 2/3 of the
		// CPU of the protojson decoding of data it replaces).
		var env struct {
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(e.Payload, &env); err != nil {
			return nil, fmt.Errorf("event %s: payload: %w", e.ID, err)
		}
		var err error
		if data, err = structpb.NewStruct(env.Data); err != nil {
			return nil, fmt.Errorf("event %s: payload data: %w", e.ID, err)
		}
	}
	return &ingestionv1.Event{
		Id:             e.ID,
		AccountId:      e.AccountID,
		Type:           e.Type,
		Data:           data,
		CreateTime:     timestamppb.New(e.CreateTime),
		IdempotencyKey: e.IdempotencyKey,
		OrderingKey:    e.OrderingKey,
		Payload:        string(e.Payload),
		DeliveryCount:  int32(e.DeliveryCount),
		TraceId:        e.TraceID,
		TraceUrl:       telemetry.TraceURL(s.jaegerUIURL, e.TraceID),
	}, nil
}

// EraseAccount implements ingestionv1.IngestionInternalServiceServer.
func (i *InternalServer) EraseAccount(ctx context.Context, req *ingestionv1.EraseAccountRequest) (*ingestionv1.EraseAccountResponse, error) {
	n, err := i.s.svc.EraseAccount(ctx, req.GetAccountId())
	if err != nil {
		return nil, err
	}
	return &ingestionv1.EraseAccountResponse{EventsErased: int64(n)}, nil
}
