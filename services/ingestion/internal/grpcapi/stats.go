package grpcapi

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// Stats implements ingestionv1.StatsServiceServer.
type Stats struct {
	ingestionv1.UnimplementedStatsServiceServer
	svc *ingest.Service
}

var _ ingestionv1.StatsServiceServer = (*Stats)(nil)

// GetDeliveryStats implements ingestionv1.StatsServiceServer.
func (s *Stats) GetDeliveryStats(ctx context.Context, req *ingestionv1.GetDeliveryStatsRequest) (*ingestionv1.GetDeliveryStatsResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	pts, err := s.svc.DeliveryStats(ctx, acct, ingest.StatsQuery{
		EndpointID: req.GetEndpointId(), Since: timeOf(req.GetSince()), Until: timeOf(req.GetUntil()),
	})
	if err != nil {
		return nil, err
	}
	out := &ingestionv1.GetDeliveryStatsResponse{Points: make([]*ingestionv1.DeliveryStatsPoint, len(pts))}
	for i, p := range pts {
		out.Points[i] = &ingestionv1.DeliveryStatsPoint{
			Minute:       timestamppb.New(p.Minute),
			Succeeded:    int64(p.OK),
			HttpError:    int64(p.HTTPError),
			NetworkError: int64(p.NetworkError),
			LatencyP50Ms: ms(p.P50),
			LatencyP99Ms: ms(p.P99),
		}
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timeOf is a request's optional time (zero when unset).
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
