package history

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/pgtest"
)

// TestLazyConnectsOncePostgresStarts: PostgreSQL down at start-up is no
// start-up failure; the store answers Unavailable naming the cause until
// PostgreSQL starts, then connects by itself (migrated, partitioned).
func TestLazyConnectsOncePostgresStarts(t *testing.T) {
	own := pgtest.StartServer(t)
	if err := own.Stop(true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l, err := OpenLazy(context.Background(), own.URL, testConfig(), LazyOptions{FirstWait: 3 * time.Second})
	if err != nil {
		t.Fatalf("OpenLazy with PostgreSQL down = %v, want no error (retried in the background)", err)
	}
	t.Cleanup(l.Close)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("OpenLazy took %s, want at most about FirstWait", d)
	}
	_, err = l.Store()
	if !errors.Is(err, apierr.ErrUnavailable) {
		t.Fatalf("Store before PostgreSQL starts = %v, want Unavailable", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "history store unreachable") || !strings.Contains(msg, "connect") || !strings.Contains(msg, "refused") {
		t.Errorf("Store's error %q: want it to start \"history store unreachable\" and name the cause (connection refused)", msg)
	}
	if err := l.Ping(context.Background()); !errors.Is(err, apierr.ErrUnavailable) {
		t.Errorf("Ping before PostgreSQL starts = %v, want Unavailable", err)
	}

	if err := own.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var s *Store
	for s == nil {
		if s, err = l.Store(); err != nil && time.Now().After(deadline) {
			t.Fatalf("the store did not connect after PostgreSQL started: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := l.Ping(context.Background()); err != nil {
		t.Fatalf("Ping once connected = %v", err)
	}
	var tables int
	if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'events_%'`).Scan(&tables); err != nil || tables == 0 {
		t.Fatalf("event partitions after the background open: %d, %v", tables, err)
	}
}

// TestLazyRefusesConfigurationErrorsAtOnce: a bad DATABASE_URL or
// retention fails start-up at once, without a connection attempt.
func TestLazyRefusesConfigurationErrorsAtOnce(t *testing.T) {
	short := testConfig()
	short.Retention = time.Hour
	for name, c := range map[string]struct {
		url   string
		cfg   Config
		field string
	}{
		"bad DATABASE_URL": {"postgres://u@h:notaport/db", testConfig(), "DATABASE_URL"},
		"short retention":  {"postgres://postgres@127.0.0.1:1/db", short, "HISTORY_RETENTION"},
	} {
		start := time.Now()
		l, err := OpenLazy(context.Background(), c.url, c.cfg, LazyOptions{})
		var inv *apierr.InvalidError
		if !errors.As(err, &inv) || inv.Field != c.field || l != nil {
			t.Errorf("%s: OpenLazy = %v, %v; want an InvalidError on %s", name, l, err, c.field)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %s, want at once", name, d)
		}
	}
}

// TestLazyCloseStopsRetriesAndMaintenance: Close returns promptly whether
// the store never opened or is being maintained; the zero Lazy answers
// Unavailable.
func TestLazyCloseStopsRetriesAndMaintenance(t *testing.T) {
	down, err := OpenLazy(context.Background(), "postgres://postgres@127.0.0.1:1/db?connect_timeout=1", testConfig(), LazyOptions{FirstWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	up, err := OpenLazy(context.Background(), srv.NewDatabase(t), testConfig(), LazyOptions{Maintain: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Store(); err != nil {
		t.Fatalf("Store of a reachable PostgreSQL = %v", err)
	}
	time.Sleep(150 * time.Millisecond) // a few maintenance rounds
	for name, l := range map[string]*Lazy{"never connected": down, "maintained": up} {
		start := time.Now()
		l.Close()
		l.Close()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Close of the %s store took %s", name, d)
		}
	}
	if err := up.Ping(context.Background()); err == nil {
		t.Error("Ping after Close succeeded")
	}
	var zero Lazy
	if _, err := zero.Store(); !errors.Is(err, apierr.ErrUnavailable) || !strings.HasPrefix(err.Error(), "history store unreachable") {
		t.Errorf("zero Lazy Store = %v", err)
	}
	zero.Close()
}
