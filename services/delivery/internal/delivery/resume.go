package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
)

// Parking and resuming. A delivery is parked (status parked, an entry in
// its shard's parked set) when it comes due while its endpoint is not
// ACTIVE, or answered 410 Gone. ResumeParked restarts the parked
// deliveries of every endpoint that is ACTIVE again, with a fresh round of
// the retry schedule; the delivery process runs it when the registry
// announces a change (pkg/changefeed: enable publishes the account id) and
// every ResumeEvery anyway, so a missed announcement delays resumption but
// never loses parked work.

// Bounds of resuming and replaying.
const (
	// MaxParkedSweep bounds the parked entries one sweep reads.
	MaxParkedSweep = 100_000
	// MaxReplay bounds the deliveries one ReplayEndpoint restarts.
	MaxReplay = 10_000
	// ResumeEvery is the period of the safety-net sweep.
	ResumeEvery = 30 * time.Second
	// resumeAgain repeats a sweep after a change announcement, once the
	// endpoint caches (3 s) have certainly expired.
	resumeAgain   = 4 * time.Second
	replayTimeout = 60 * time.Second
)

// ResumeParked restarts the parked deliveries of ACTIVE endpoints (and of
// deleted ones, which the dispatcher then cancels) and returns how many.
func (s *Service) ResumeParked(ctx context.Context) (int, error) {
	groups, err := s.d.deps.History.Parked(ctx, MaxParkedSweep)
	if err != nil {
		return 0, fmt.Errorf("reading parked deliveries: %w", err)
	}
	total := 0
	for _, g := range groups {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		t, err := s.d.deps.Targets.Target(lctx, g.AccountID, g.EndpointID)
		cancel()
		switch {
		case errors.Is(err, apierr.ErrNotFound):
		case err != nil:
			s.d.deps.Logger.WarnContext(ctx, "resume: endpoint lookup failed; retried on the next sweep", "endpoint_id", g.EndpointID, "error", err.Error())
			continue
		case t.Status != EndpointActive:
			continue
		}
		var n int
		if g.InHistory {
			n, err = s.d.deps.History.ResumeHistory(ctx, g.AccountID, g.EndpointID, s.d.deps.Clock.Now())
		} else {
			n, err = s.d.deps.History.Restart(ctx, g.AccountID, g.IDs, []Status{StatusParked}, s.d.deps.Clock.Now())
		}
		total += n
		if err != nil {
			return total, fmt.Errorf("resuming endpoint %s: %w", g.EndpointID, err)
		}
		if n > 0 {
			s.d.deps.Logger.InfoContext(ctx, "parked deliveries resumed", "endpoint_id", g.EndpointID, "count", n)
		}
	}
	if total > 0 {
		s.wake()
	}
	return total, nil
}

// RunResumer sweeps the parked deliveries every `every` and shortly after
// each kick (a registry change), until ctx ends; each sweep also announces
// the endpoints the system disabled that are enabled again
// (endpoint.enabled).
func (s *Service) RunResumer(ctx context.Context, kick <-chan struct{}, every time.Duration) {
	if every <= 0 {
		every = ResumeEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	again := time.NewTimer(time.Hour)
	again.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
			again.Reset(resumeAgain)
		case <-tick.C:
		case <-again.C:
		}
		sctx, cancel := context.WithTimeout(ctx, every)
		if _, err := s.ResumeParked(sctx); err != nil && ctx.Err() == nil {
			s.d.deps.Logger.Error("resuming parked deliveries failed", "error", err.Error())
		}
		if err := s.announceEnabled(sctx); err != nil && ctx.Err() == nil {
			s.d.deps.Logger.Error("announcing re-enabled endpoints failed; retried on the next sweep", "error", err.Error())
		}
		cancel()
	}
}

// Replay re-sends every failed or parked delivery of one of the account's
// endpoints created since `since` (at most MaxReplay, oldest first; never a
// Send Test delivery, which Retry refuses too), each
// with a fresh round of the retry schedule. The sends happen in the
// background; ListDeliveries shows their progress. It returns how many
// were queued.
func (s *Service) Replay(ctx context.Context, accountID, endpointID string, since time.Time) (int, error) {
	switch {
	case accountID == "":
		return 0, apierr.Wrap(apierr.ErrUnauthenticated, "no account")
	case endpointID == "":
		return 0, apierr.Invalid("endpoint_id", "is required")
	case since.IsZero():
		return 0, apierr.Invalid("since", "is required")
	case since.After(s.d.deps.Clock.Now()):
		return 0, apierr.Invalid("since", "is in the future")
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	_, err := s.d.deps.Targets.Target(lctx, accountID, endpointID)
	cancel()
	if errors.Is(err, apierr.ErrNotFound) {
		return 0, apierr.NotFound("endpoint", endpointID)
	}
	if err != nil {
		return 0, apierr.Wrap(apierr.ErrUnavailable, "endpoint lookup failed: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	from := []Status{StatusFailed, StatusParked}
	ids, err := s.d.deps.History.Find(ctx, accountID, endpointID, from, since, MaxReplay)
	if err != nil {
		return 0, fmt.Errorf("finding deliveries to replay: %w", err)
	}
	// The audit entry is written now: validated, nothing touched yet. A
	// replay restarts deliveries of every shard (each shard is its own
	// slot on Redis Cluster, and history's too), so no one transaction can
	// hold the entry and all the changes; written first, a replay never
	// happens without its entry (a failure here fails the call before any
	// delivery moved). It says what was requested and found; a crash
	// midway leaves the entry with part of the restarts done, which the
	// caller sees (the call failed) and may repeat (idempotent in effect).
	// Per-delivery entries in each restart script would be atomic, but
	// would flood the log with up to MaxReplay entries for one action.
	ent := auditlog.New(accountID, auditlog.ActorFrom(ctx), auditlog.EndpointReplay, endpointID,
		fmt.Sprintf("replay requested of failed and parked deliveries since %s: %d found", since.UTC().Format(time.RFC3339), len(ids)),
		s.d.deps.Clock.Now())
	if err := s.d.deps.History.RecordAudit(ctx, ent); err != nil {
		return 0, apierr.Wrap(apierr.ErrUnavailable, "the replay's audit entry could not be written, nothing was replayed (%v); try again", err)
	}
	n, err := s.d.deps.History.Restart(ctx, accountID, ids, from, s.d.deps.Clock.Now())
	if err != nil {
		return n, fmt.Errorf("replaying: %w", err)
	}
	if n > 0 {
		s.wake()
	}
	return n, nil
}
