package gateway

import (
	"errors"
	"io"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
)

// publishHandler serves POST /v1/events, the producers' hot path, without
// the transcoding mux: it decodes the body once with the mux's own
// marshaler (the same proto3 JSON rules and error messages), forwards the
// caller's credential as the mux does, calls PublishEvent and answers in
// the same format, errors included (google.rpc Status JSON through the
// mux's error handler). What it leaves out is per-request work nobody
// reads here: the annotated incoming context (x-forwarded-* and
// grpcgateway-* metadata), the header and trailer capture and the
// response-forwarding options. The route is the one in ingestion.proto;
// the mux still serves it when this handler is not mounted.
func publishHandler(mux *runtime.ServeMux, m runtime.Marshaler, client ingestionv1.IngestionServiceClient) http.Handler {
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
		md := metadata.Pairs(authn.GatewayMetadata, "1")
		if a := r.Header.Get("Authorization"); a != "" {
			md.Set("authorization", a)
		}
		resp, err := client.PublishEvent(metadata.NewOutgoingContext(ctx, md), &req)
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
