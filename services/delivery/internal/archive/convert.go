package archive

import (
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// Conversions between the delivery service's records and history's.

func toHistoryDelivery(d *delivery.Delivery, uploadID string) history.Delivery {
	h := history.Delivery{
		ID: d.ID, EventID: d.EventID, EndpointID: d.EndpointID, AccountID: d.AccountID,
		EventType: d.EventType, UploadID: uploadID, Status: history.Status(d.Status), Version: d.Version,
		Attempts: d.Attempts, Base: d.Base, FirstAttempt: d.FirstAttempt, CreateTime: d.CreateTime,
		UpdateTime: d.UpdateTime, TraceParent: d.TraceParent, TraceState: d.TraceState,
		LastCode: d.LastCode, LastError: d.LastError, Test: d.Test, OrderingKey: d.OrderingKey, LineSeq: d.LineSeq,
	}
	if d.Test {
		h.Body = d.Body // a restored delivery's copy of its event's payload stays with the event
	}
	return h
}

func toHistoryAttempts(as []delivery.Attempt) []history.Attempt {
	out := make([]history.Attempt, len(as))
	for i, a := range as {
		out[i] = history.Attempt{
			Number: a.Number, Start: a.Start, StatusCode: a.StatusCode, Latency: a.Latency,
			ErrorType: string(a.ErrorType), Error: a.Error, Response: a.Response,
			RequestHeaders: a.RequestHeaders, TraceID: a.TraceID, SpanID: a.SpanID, URL: a.URL,
		}
	}
	return out
}

func toHistoryEvent(e *eventstore.Event) history.Event {
	return history.Event{
		ID: e.ID, AccountID: e.AccountID, Type: e.Type, Payload: e.Payload, CreateTime: e.CreateTime,
		IdempotencyKey: e.IdempotencyKey, UploadID: e.UploadID, TraceID: e.TraceID, DeliveryCount: e.DeliveryCount,
	}
}

// FromHistory turns a history record into the delivery service's.
func FromHistory(h *history.Delivery) delivery.Delivery {
	return delivery.Delivery{
		ID: h.ID, EventID: h.EventID, EndpointID: h.EndpointID, AccountID: h.AccountID,
		EventType: h.EventType, Status: delivery.Status(h.Status), Attempts: h.Attempts, Base: h.Base,
		FirstAttempt: h.FirstAttempt, CreateTime: h.CreateTime, UpdateTime: h.UpdateTime,
		TraceParent: h.TraceParent, TraceState: h.TraceState, LastCode: h.LastCode, LastError: h.LastError,
		Test: h.Test, Body: h.Body, Version: h.Version, OrderingKey: h.OrderingKey, LineSeq: h.LineSeq,
	}
}

// FromHistoryAttempts turns history's attempts into the delivery service's.
func FromHistoryAttempts(as []history.Attempt) []delivery.Attempt {
	out := make([]delivery.Attempt, len(as))
	for i, a := range as {
		out[i] = delivery.Attempt{
			Number: a.Number, Start: a.Start, StatusCode: a.StatusCode, Latency: a.Latency,
			ErrorType: delivery.ErrorType(a.ErrorType), Error: a.Error, Response: a.Response,
			RequestHeaders: a.RequestHeaders, TraceID: a.TraceID, SpanID: a.SpanID, URL: a.URL,
		}
	}
	return out
}
