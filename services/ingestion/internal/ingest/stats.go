package ingest

import (
	"context"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// Rollups are the history tier's per-minute delivery rollups
// (history.Store.Series).
type Rollups interface {
	DeliverySeries(ctx context.Context, accountID, endpointID string, from, to time.Time) ([]history.Point, error)
}

// Bounds of a DeliveryStats window.
const (
	DefaultStatsWindow = 24 * time.Hour
	MaxStatsWindow     = 7 * 24 * time.Hour
)

// StatsQuery selects the minutes of an account's (or one endpoint's)
// attempts. Zero Until is now; zero Since is Until - DefaultStatsWindow.
type StatsQuery struct {
	EndpointID   string
	Since, Until time.Time
}

// DeliveryStats returns one point per minute in [Since, Until) of the
// account's attempts (of one endpoint when EndpointID is set): outcomes
// and latency quantiles, from the rollups history keeps as attempts are
// archived, never from a scan of raw attempts. A delivery's attempts count
// once it ended and was archived (seconds after its end).
func (s *Service) DeliveryStats(ctx context.Context, accountID string, q StatsQuery) ([]history.Point, error) {
	if q.EndpointID != "" && !ids.Valid(ids.Endpoint, q.EndpointID) {
		return nil, apierr.Invalid("endpoint_id", "must be an endpoint id (ep_ followed by 26 characters) or empty, got %q", short(q.EndpointID))
	}
	if q.Until.IsZero() {
		q.Until = s.now()
	}
	if q.Since.IsZero() {
		q.Since = q.Until.Add(-DefaultStatsWindow)
	}
	switch w := q.Until.Sub(q.Since); {
	case w <= 0:
		return nil, apierr.Invalid("until", "must be after since")
	case w > MaxStatsWindow:
		return nil, apierr.Invalid("since", "the window may span at most %s, got %s", MaxStatsWindow, w)
	}
	if s.rollups == nil {
		return nil, apierr.Wrap(apierr.ErrUnavailable, "history store unreachable: not configured (DATABASE_URL)")
	}
	return s.rollups.DeliverySeries(ctx, accountID, q.EndpointID, q.Since, q.Until)
}
