package history

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
)

// Opening the store lazily: PostgreSQL is never a start-up or readiness
// dependency of a service. Both delivery (archiver, merged reads,
// maintenance) and ingestion (archived events, rollups) open the store with
// OpenLazy.

// Defaults of LazyOptions and the retry bounds of the background attempts.
const (
	DefaultFirstWait = 10 * time.Second
	lazyFirstRetry   = time.Second
	lazyMaxRetry     = 30 * time.Second
	lazyAttemptWait  = 30 * time.Second // bounds each background attempt
)

// LazyOptions tune OpenLazy.
type LazyOptions struct {
	// FirstWait bounds the first attempt, made before OpenLazy returns, so
	// that a healthy PostgreSQL is in use from the first request
	// (DefaultFirstWait when 0).
	FirstWait time.Duration
	// Maintain, when positive, runs the store's maintenance (RunMaintenance)
	// at that period once it is open. Only one service should.
	Maintain time.Duration
	// Logger defaults to the store's Config.Logger, else slog.Default().
	Logger *slog.Logger
}

// Lazy is the history store once it could be opened. Until then Store
// answers an error wrapping apierr.ErrUnavailable whose message starts
// "history store unreachable" and names the last connection error. The
// zero Lazy is never connected (tests).
type Lazy struct {
	s atomic.Pointer[Store]

	mu      sync.Mutex
	lastErr error

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// Opened returns a Lazy over a store already open (tests, tools).
func Opened(s *Store) *Lazy {
	l := &Lazy{}
	l.s.Store(s)
	return l
}

// OpenLazy opens the store at url: a first attempt within opts.FirstWait
// (and ctx) before it returns, then, if that failed, retrying in the
// background (1 s doubling to 30 s) until it succeeds or Close is called.
// A configuration error (DATABASE_URL not a connection string, a bad
// retention) is returned at once and nothing is retried. Any other failure
// (PostgreSQL down, refusing, a failed migration) is logged and retried;
// Store answers Unavailable meanwhile. Once open, the store's maintenance
// runs every opts.Maintain when that is positive.
func OpenLazy(ctx context.Context, url string, cfg Config, opts LazyOptions) (*Lazy, error) {
	if opts.FirstWait <= 0 {
		opts.FirstWait = DefaultFirstWait
	}
	log := opts.Logger
	if log == nil {
		log = cfg.Logger
	}
	if log == nil {
		log = slog.Default()
	}
	l := &Lazy{done: make(chan struct{})}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel

	fctx, fcancel := context.WithTimeout(ctx, opts.FirstWait)
	s, err := Open(fctx, url, cfg)
	fcancel()
	var invalid *apierr.InvalidError
	if errors.As(err, &invalid) { // Open checks the configuration before it connects
		cancel()
		close(l.done)
		return nil, err
	}
	if err != nil {
		l.setErr(err)
		l.logFailure(log, err, lazyFirstRetry)
	} else {
		l.s.Store(s)
		log.Info("history store open")
	}
	go l.run(bg, url, cfg, opts.Maintain, log)
	return l, nil
}

// run retries until the store opens (unless it is open already), then
// maintains it until ctx ends.
func (l *Lazy) run(ctx context.Context, url string, cfg Config, maintain time.Duration, log *slog.Logger) {
	defer close(l.done)
	s := l.s.Load()
	for wait := lazyFirstRetry; s == nil; wait = min(2*wait, lazyMaxRetry) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		actx, cancel := context.WithTimeout(ctx, lazyAttemptWait)
		opened, err := Open(actx, url, cfg)
		cancel()
		if err == nil {
			s = opened
			l.s.Store(s)
			l.setErr(nil)
			log.Info("history store open")
			break
		}
		if ctx.Err() != nil {
			return
		}
		l.setErr(err)
		l.logFailure(log, err, min(2*wait, lazyMaxRetry))
	}
	if maintain > 0 {
		_ = s.RunMaintenance(ctx, maintain)
	}
}

func (l *Lazy) logFailure(log *slog.Logger, err error, retryIn time.Duration) {
	if errors.Is(err, apierr.ErrUnavailable) {
		log.Warn("history store unreachable; history waits (archiving) or answers Unavailable (reads) until it connects", "error", err.Error(), "retry_in", retryIn.String())
		return
	}
	log.Error("history store refused; history answers Unavailable until it opens", "error", err.Error(), "retry_in", retryIn.String())
}

func (l *Lazy) setErr(err error) {
	l.mu.Lock()
	l.lastErr = err
	l.mu.Unlock()
}

// Store returns the open store, or an error wrapping apierr.ErrUnavailable
// ("history store unreachable: …", naming the last connection error).
func (l *Lazy) Store() (*Store, error) {
	if s := l.s.Load(); s != nil {
		return s, nil
	}
	l.mu.Lock()
	err := l.lastErr
	l.mu.Unlock()
	switch {
	case err == nil:
		return nil, apierr.Wrap(apierr.ErrUnavailable, "history store unreachable: not connected yet")
	case errors.Is(err, apierr.ErrUnavailable):
		return nil, err // the store's own: "history store unreachable (connect): …"
	default:
		return nil, apierr.Wrap(apierr.ErrUnavailable, "history store unreachable: not open yet: %v", err)
	}
}

// Ping reports whether the history store answers (health of the
// component, never of the service).
func (l *Lazy) Ping(ctx context.Context) error {
	s, err := l.Store()
	if err != nil {
		return err
	}
	return s.Ping(ctx)
}

// Close stops the background attempts and the maintenance, waits for them
// and closes the store. It may be called more than once.
func (l *Lazy) Close() {
	l.closeOnce.Do(func() {
		if l.cancel != nil {
			l.cancel()
		}
		if l.done != nil {
			<-l.done
		}
		if s := l.s.Load(); s != nil {
			s.Close()
		}
	})
}
