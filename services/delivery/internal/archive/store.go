package archive

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/history"
)

// History maintenance (the settings' defaults are pkg/config's).
const (
	// MaintainEvery is the period of history maintenance (partitions
	// ahead, retention, parked expiry).
	MaintainEvery = 10 * time.Minute
)

// Lazy is the history store once it could be opened: PostgreSQL is never
// a start-up or readiness dependency of delivery. Open retries in the
// background until it succeeds; until then every history call answers
// Unavailable.
type Lazy struct {
	s atomic.Pointer[history.Store]
}

// ErrNotConnected is what history calls answer before the store is open.
var ErrNotConnected = apierr.Wrap(apierr.ErrUnavailable, "history store unreachable: not connected yet")

// Store returns the store, or ErrNotConnected.
func (l *Lazy) Store() (*history.Store, error) {
	if s := l.s.Load(); s != nil {
		return s, nil
	}
	return nil, ErrNotConnected
}

// Set installs an open store (tests).
func (l *Lazy) Set(s *history.Store) { l.s.Store(s) }

// FirstOpenWait bounds the first attempt to open the store, made before
// the service starts serving (so that a healthy PostgreSQL is in use from
// the first request); later attempts run in the background.
const FirstOpenWait = 10 * time.Second

// OpenInBackground opens the store: a first attempt within FirstOpenWait
// before it returns, then, if that failed, retrying in the background with
// backoff (1 s doubling to 30 s) until ctx ends. Once open it runs the
// store's maintenance every maintainEvery, and closes it when ctx ends.
func (l *Lazy) OpenInBackground(ctx context.Context, url string, cfg history.Config, maintainEvery time.Duration, log *slog.Logger) {
	first := make(chan struct{})
	go func() {
		wait := time.Second
		for try := 0; ; try++ {
			timeout := 30 * time.Second
			if try == 0 {
				timeout = FirstOpenWait
			}
			octx, cancel := context.WithTimeout(ctx, timeout)
			s, err := history.Open(octx, url, cfg)
			cancel()
			if err == nil {
				l.s.Store(s)
			}
			if try == 0 {
				close(first)
			}
			if err == nil {
				log.Info("history store open")
				_ = s.RunMaintenance(ctx, maintainEvery)
				s.Close()
				return
			}
			if ctx.Err() != nil {
				return
			}
			log.Warn("history store not reachable; delivery goes on, history waits in Redis", "error", err.Error(), "retry_in", wait.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 30*time.Second)
		}
	}()
	<-first
}
