// Package grpcapi translates DeliveryService RPCs to the delivery domain
// and back. It holds no logic of its own; domain errors become status codes
// in pkg/serve's interceptor.
package grpcapi

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// Policy is the credential each method needs.
func Policy() authn.Policy {
	return authn.Policy{
		deliveryv1.DeliveryService_Schedule_FullMethodName:       authn.Internal,
		deliveryv1.DeliveryService_ListDeliveries_FullMethodName: authn.Customer,
		deliveryv1.DeliveryService_GetDelivery_FullMethodName:    authn.Customer,
		deliveryv1.DeliveryService_RetryDelivery_FullMethodName:  authn.Customer,
		deliveryv1.DeliveryService_ReplayEndpoint_FullMethodName: authn.Customer,
		deliveryv1.DeliveryService_SendTest_FullMethodName:       authn.Customer,

		deliveryv1.DeliveryInternalService_EraseAccount_FullMethodName: authn.Internal,
	}
}

// Callers is, for each internal method, the services allowed to call it
// over mutual TLS: only ingestion schedules, only the registry erases.
func Callers() authn.Callers {
	return authn.Callers{
		deliveryv1.DeliveryService_Schedule_FullMethodName:             {"ingestion"},
		deliveryv1.DeliveryInternalService_EraseAccount_FullMethodName: {"registry"},
	}
}

// Server implements deliveryv1.DeliveryServiceServer.
type Server struct {
	deliveryv1.UnimplementedDeliveryServiceServer
	svc         *delivery.Service
	jaegerUIURL string
}

var _ deliveryv1.DeliveryServiceServer = (*Server)(nil)

// New returns a Server. jaegerUIURL (JAEGER_UI_URL, may be empty) turns
// trace ids into links.
func New(svc *delivery.Service, jaegerUIURL string) *Server {
	return &Server{svc: svc, jaegerUIURL: jaegerUIURL}
}

// Schedule implements DeliveryServiceServer.
func (s *Server) Schedule(ctx context.Context, req *deliveryv1.ScheduleRequest) (*deliveryv1.ScheduleResponse, error) {
	items := make([]delivery.ScheduleItem, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = delivery.ScheduleItem{EventID: it.GetEventId(), EndpointID: it.GetEndpointId(),
			TraceParent: it.GetTraceParent(), TraceState: it.GetTraceState(), OrderingKey: it.GetOrderingKey(),
			RepeatOrderingKey: it.GetRepeatOrderingKey()}
	}
	idList, err := s.svc.Schedule(ctx, req.GetAccountId(), req.GetEventType(), items)
	if err != nil {
		return nil, err
	}
	return &deliveryv1.ScheduleResponse{DeliveryIds: idList}, nil
}

// ListDeliveries implements DeliveryServiceServer.
func (s *Server) ListDeliveries(ctx context.Context, req *deliveryv1.ListDeliveriesRequest) (*deliveryv1.ListDeliveriesResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	f := delivery.Filter{
		EndpointID: req.GetEndpointId(), EventType: req.GetEventType(), EventID: req.GetEventId(),
		PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	}
	if st := req.GetStatus(); st != deliveryv1.DeliveryStatus_DELIVERY_STATUS_UNSPECIFIED {
		ds, ok := statusFromProto[st]
		if !ok {
			return nil, apierr.Invalid("status", "unknown status %d", st)
		}
		f.Status = ds
	}
	if t := req.GetStartTime(); t != nil {
		f.Start = t.AsTime()
	}
	if t := req.GetEndTime(); t != nil {
		f.End = t.AsTime()
	}
	list, next, err := s.svc.List(ctx, acct, f)
	if err != nil {
		return nil, err
	}
	resp := &deliveryv1.ListDeliveriesResponse{NextPageToken: next, Deliveries: make([]*deliveryv1.Delivery, len(list))}
	for i := range list {
		resp.Deliveries[i] = s.toProto(&list[i])
	}
	return resp, nil
}

// GetDelivery implements DeliveryServiceServer.
func (s *Server) GetDelivery(ctx context.Context, req *deliveryv1.GetDeliveryRequest) (*deliveryv1.GetDeliveryResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	d, atts, body, err := s.svc.Get(ctx, acct, req.GetId())
	if err != nil {
		return nil, err
	}
	pd := s.toProto(d)
	pd.Payload = string(body)
	for i := range atts {
		pd.Attempts = append(pd.Attempts, attemptToProto(&atts[i]))
	}
	return &deliveryv1.GetDeliveryResponse{Delivery: pd}, nil
}

// RetryDelivery implements DeliveryServiceServer.
func (s *Server) RetryDelivery(ctx context.Context, req *deliveryv1.RetryDeliveryRequest) (*deliveryv1.RetryDeliveryResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	// The audit entry is written by the service, in the same Redis script
	// as the retry (delivery.Service.Retry).
	d, err := s.svc.Retry(ctx, acct, req.GetId())
	if err != nil {
		return nil, err
	}
	return &deliveryv1.RetryDeliveryResponse{Delivery: s.toProto(d)}, nil
}

// ReplayEndpoint implements DeliveryServiceServer.
func (s *Server) ReplayEndpoint(ctx context.Context, req *deliveryv1.ReplayEndpointRequest) (*deliveryv1.ReplayEndpointResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	var since time.Time
	if t := req.GetSince(); t != nil {
		since = t.AsTime()
	}
	// The audit entry is written by the service before the replay touches
	// any delivery (delivery.Service.Replay says why not in one step).
	n, err := s.svc.Replay(ctx, acct, req.GetEndpointId(), since)
	if err != nil {
		return nil, err
	}
	return &deliveryv1.ReplayEndpointResponse{Queued: int32(n)}, nil
}

// SendTest implements DeliveryServiceServer.
func (s *Server) SendTest(ctx context.Context, req *deliveryv1.SendTestRequest) (*deliveryv1.SendTestResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.svc.SendTest(ctx, acct, req.GetEndpointId(), req.GetEventType())
	if err != nil {
		return nil, err
	}
	a := &r.Attempt
	return &deliveryv1.SendTestResponse{
		Success: a.Succeeded(), StatusCode: int32(a.StatusCode), LatencyMs: a.Latency.Milliseconds(),
		Error: a.Error, ErrorType: errorTypeToProto[a.ErrorType], ResponseBody: a.Response,
		DeliveryId: r.DeliveryID,
	}, nil
}

var statusToProto = map[delivery.Status]deliveryv1.DeliveryStatus{
	delivery.StatusPending:   deliveryv1.DeliveryStatus_DELIVERY_STATUS_PENDING,
	delivery.StatusSucceeded: deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED,
	delivery.StatusFailed:    deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED,
	delivery.StatusParked:    deliveryv1.DeliveryStatus_DELIVERY_STATUS_PARKED,
	delivery.StatusCanceled:  deliveryv1.DeliveryStatus_DELIVERY_STATUS_CANCELED,
}

var statusFromProto = func() map[deliveryv1.DeliveryStatus]delivery.Status {
	m := make(map[deliveryv1.DeliveryStatus]delivery.Status, len(statusToProto))
	for k, v := range statusToProto {
		m[v] = k
	}
	return m
}()

var errorTypeToProto = map[delivery.ErrorType]deliveryv1.ErrorType{
	delivery.ErrorNone:       deliveryv1.ErrorType_ERROR_TYPE_UNSPECIFIED,
	delivery.ErrorDNS:        deliveryv1.ErrorType_ERROR_TYPE_DNS,
	delivery.ErrorConnect:    deliveryv1.ErrorType_ERROR_TYPE_CONNECT,
	delivery.ErrorTLS:        deliveryv1.ErrorType_ERROR_TYPE_TLS,
	delivery.ErrorTimeout:    deliveryv1.ErrorType_ERROR_TYPE_TIMEOUT,
	delivery.ErrorHTTPStatus: deliveryv1.ErrorType_ERROR_TYPE_HTTP_STATUS,
	delivery.ErrorBlocked:    deliveryv1.ErrorType_ERROR_TYPE_BLOCKED,
	delivery.ErrorOther:      deliveryv1.ErrorType_ERROR_TYPE_OTHER,
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// traceID is the trace id in a W3C traceparent ("00-<trace>-<span>-<flags>").
func traceID(tp string) string {
	if len(tp) >= 35 && tp[2] == '-' {
		return tp[3:35]
	}
	return ""
}

func (s *Server) toProto(d *delivery.Delivery) *deliveryv1.Delivery {
	tid := traceID(d.TraceParent)
	return &deliveryv1.Delivery{
		Id: d.ID, EventId: d.EventID, EndpointId: d.EndpointID, EventType: d.EventType,
		Status: statusToProto[d.Status], AttemptCount: int32(d.Attempts),
		NextAttemptTime: ts(d.NextTime), CreateTime: ts(d.CreateTime), UpdateTime: ts(d.UpdateTime),
		LastStatusCode: int32(d.LastCode), LastError: d.LastError, Test: d.Test,
		TraceId: tid, TraceUrl: telemetry.TraceURL(s.jaegerUIURL, tid),
		OrderingKey: d.OrderingKey, WaitingFor: d.WaitingFor,
	}
}

func attemptToProto(a *delivery.Attempt) *deliveryv1.Attempt {
	return &deliveryv1.Attempt{
		Number: int32(a.Number), StartTime: ts(a.Start), StatusCode: int32(a.StatusCode),
		LatencyMs: a.Latency.Milliseconds(), ErrorType: errorTypeToProto[a.ErrorType], Error: a.Error,
		ResponseBody: a.Response, RequestHeaders: a.RequestHeaders, TraceId: a.TraceID, SpanId: a.SpanID,
		Url: a.URL,
	}
}

// InternalServer implements deliveryv1.DeliveryInternalServiceServer: the
// registry's erasure of an account.
type InternalServer struct {
	deliveryv1.UnimplementedDeliveryInternalServiceServer
	svc *delivery.Service
}

var _ deliveryv1.DeliveryInternalServiceServer = (*InternalServer)(nil)

// NewInternal returns an InternalServer.
func NewInternal(svc *delivery.Service) *InternalServer { return &InternalServer{svc: svc} }

// EraseAccount implements deliveryv1.DeliveryInternalServiceServer.
func (i *InternalServer) EraseAccount(ctx context.Context, req *deliveryv1.EraseAccountRequest) (*deliveryv1.EraseAccountResponse, error) {
	n, err := i.svc.EraseAccount(ctx, req.GetAccountId(), req.GetEndpointIds())
	if err != nil {
		return nil, err
	}
	return &deliveryv1.EraseAccountResponse{DeliveriesErased: int64(n)}, nil
}
