package history

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/voxscriber/webhooks/pkg/apierr"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Advisory lock keys (pg_advisory_lock): migrations, and partition changes
// (Archive holds the second shared, so no partition is dropped under a batch).
const (
	migrationLockID = 0x766f785f68697374 // "vox_hist"
	partitionLockID = 0x766f785f70617274 // "vox_part"
)

// Config tunes a Store.
type Config struct {
	// Retention is HISTORY_RETENTION: whole days older than it are dropped.
	Retention time.Duration
	// ParkedRetention is PARKED_RETENTION: a parked delivery older than it
	// ends failed (ExpireParked, run by RunMaintenance).
	ParkedRetention time.Duration
	// ScheduleTotal is the sum of the retry schedule's delays.
	ScheduleTotal time.Duration
	// DaysAhead is how many days of partitions exist beyond today (default
	// and minimum 2).
	DaysAhead int
	// MaxConns bounds the pool (default pgxpool's: max(4, CPUs)).
	MaxConns int32
	// ConnectTimeout bounds each connection attempt (default 5 s), so reads
	// answer Unavailable quickly when PostgreSQL is down.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
	// Meter defaults to the OTel global meter provider's.
	Meter metric.Meter
	// Now defaults to time.Now (tests move the clock).
	Now func() time.Time
	// Tracer, when set, sees every query (e.g. an OTel pgx tracer; tests
	// record the SQL to EXPLAIN it).
	Tracer pgx.QueryTracer
}

// Store is the history tier.
type Store struct {
	pool        *pgxpool.Pool
	cfg         Config
	log         *slog.Logger
	quarantined metric.Int64Counter
	archived    metric.Int64Counter
	forked      metric.Int64Counter
}

// CheckRetention refuses a HISTORY_RETENTION too short to outlive parked
// work: it must be at least PARKED_RETENTION + the schedule's total + 1 day,
// so a parked delivery ends failed (visibly) before its day is dropped.
func CheckRetention(history, parked, scheduleTotal time.Duration) error {
	min := parked + scheduleTotal + 24*time.Hour
	if history < min {
		return apierr.Invalid("HISTORY_RETENTION", "must be at least PARKED_RETENTION (%s) + the retry schedule's total (%s) + 24h = %s, got %s", parked, scheduleTotal, min, history)
	}
	return nil
}

// Open connects to PostgreSQL at url, applies the embedded migrations under
// an advisory lock and creates the partitions from Retention ago to
// DaysAhead days ahead. It fails when CheckRetention does, and with an
// error wrapping apierr.ErrUnavailable when PostgreSQL cannot be reached.
func Open(ctx context.Context, url string, cfg Config) (*Store, error) {
	if cfg.Retention <= 0 {
		return nil, apierr.Invalid("HISTORY_RETENTION", "must be positive, got %s", cfg.Retention)
	}
	if err := CheckRetention(cfg.Retention, cfg.ParkedRetention, cfg.ScheduleTotal); err != nil {
		return nil, err
	}
	if cfg.DaysAhead < 2 {
		cfg.DaysAhead = 2
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Meter == nil {
		cfg.Meter = otel.GetMeterProvider().Meter("github.com/voxscriber/webhooks/pkg/history")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, apierr.Invalid("DATABASE_URL", "not a PostgreSQL connection string: %v", err)
	}
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	if cfg.Tracer != nil {
		pc.ConnConfig.Tracer = cfg.Tracer
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pc.HealthCheckPeriod = 10 * time.Second
	pc.ConnConfig.RuntimeParams["timezone"] = "UTC" // days and minutes are UTC
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, wrapErr("connect", err)
	}
	s := &Store{pool: pool, cfg: cfg, log: cfg.Logger}
	if s.quarantined, err = cfg.Meter.Int64Counter("history.quarantined_rows",
		metric.WithDescription("Records archived into the quarantine table because they fit no partition or carry invalid ids."),
		metric.WithUnit("{row}")); err != nil {
		pool.Close()
		return nil, err
	}
	if s.archived, err = cfg.Meter.Int64Counter("history.archived_rows",
		metric.WithDescription("Records written by Archive, by kind."), metric.WithUnit("{row}")); err != nil {
		pool.Close()
		return nil, err
	}
	if s.forked, err = cfg.Meter.Int64Counter("history.forked_deliveries",
		metric.WithDescription("Deliveries archived while history held another copy at a higher version, updated earlier (Archived.Newer): their versions forked; the archiver renumbers and archives the live copy again. Should stay 0."),
		metric.WithUnit("{delivery}")); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.EnsurePartitions(ctx, cfg.Now()); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// migrate applies the embedded migrations, one pod at a time (goose's
// session advisory lock). A database migrated further by a newer release
// is fine: migrations are expand/contract, so this code keeps working.
func (s *Store) migrate(ctx context.Context) error {
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID))
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker),
		goose.WithTableName("history_schema_migrations"),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return wrapErr("migrate", err)
	}
	for _, r := range res {
		s.log.Info("history: migration applied", "source", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that PostgreSQL answers (for health).
func (s *Store) Ping(ctx context.Context) error {
	return wrapErr("ping", s.pool.Ping(ctx))
}

// Pool returns the connection pool (for tests and the integration's own
// queries in the same database).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// unavailableError is a failure to reach PostgreSQL (down, refusing,
// restarting, too slow).
type unavailableError struct {
	op  string
	err error
}

func (e *unavailableError) Error() string {
	return "history store unreachable (" + e.op + "): " + e.err.Error()
}

func (e *unavailableError) Unwrap() []error { return []error{apierr.ErrUnavailable, e.err} }

// wrapErr classifies err: failures to reach PostgreSQL wrap
// apierr.ErrUnavailable; SQL errors are returned as internal errors naming
// the operation.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, apierr.ErrUnavailable) || errors.Is(err, apierr.ErrNotFound) {
		return err
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case len(pg.Code) >= 2 && pg.Code[:2] == "08", // connection exception
			pg.Code == "57P01", pg.Code == "57P02", pg.Code == "57P03", // shutdown, starting up
			pg.Code == "53300", // too many connections
			pg.Code == "57014": // statement timeout
			return &unavailableError{op: op, err: err}
		}
		return fmt.Errorf("history: %s: %w", op, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("history: %s: %w", op, err)
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || pgconn.SafeToRetry(err) || isConnClosed(err) {
		return &unavailableError{op: op, err: err}
	}
	return fmt.Errorf("history: %s: %w", op, err)
}

func isConnClosed(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"conn closed", "unexpected eof", "connection reset", "broken pipe", "closed pool", "connection refused"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
