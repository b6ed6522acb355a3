// Package pgtest starts a private PostgreSQL server for tests: initdb into a
// temporary directory, a free port on 127.0.0.1, the unix socket in that
// directory, fsync off (the OS keeps what a killed server wrote, so a
// kill -9 loses no commit; synchronous_commit stays on for that). Tests never
// touch a server already running on the machine (5432 is never used).
//
// The binaries are Debian's (apt-get install -y postgresql): the newest
// /usr/lib/postgresql/*/bin is used, or $PG_BIN when set. They refuse to run
// as root, so as root every server command runs through
// `runuser -u postgres --` in a directory owned by postgres.
//
// Start-up takes 2–3 s, so a package shares one server across its tests:
//
//	var srv *pgtest.Server
//
//	func TestMain(m *testing.M) {
//		var err error
//		srv, err = pgtest.Launch()
//		if err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
//		code := m.Run()
//		srv.Close()
//		os.Exit(code)
//	}
//
// and each test takes a fresh database on it with srv.NewDatabase(t). Tests
// that stop or kill the server (chaos tests) start their own with
// StartServer(t) and use its Restart / Kill / Start methods.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/voxscriber/webhooks/pkg/testport"
)

// Server is a private PostgreSQL server.
type Server struct {
	// Dir holds the data directory, the socket and the log.
	Dir  string
	Port int
	// URL is a pgx connection string for database "test".
	URL string

	bin     string
	data    string
	log     string
	ownsDir bool
	mu      sync.Mutex
	dbs     int
}

// Start launches a server for t, creates database "test", stops the server
// when t ends and returns the database's URL.
func Start(t testing.TB) string {
	t.Helper()
	return StartServer(t).URL
}

// StartServer is Start returning the server, for tests that restart or
// kill it.
func StartServer(t testing.TB) *Server {
	t.Helper()
	if _, err := binDir(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// testing makes the parent of TempDir 0700: let postgres through.
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	s, err := launch(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Launch starts a server in a new temporary directory, for TestMain; Close
// stops it and removes the directory.
func Launch() (*Server, error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(dir, 0o755)
	s, err := launch(dir, true)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// binDir finds the newest installed PostgreSQL binaries.
func binDir() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", errors.New("pgtest: PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH): apt-get install -y postgresql")
	}
	version := func(p string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

func launch(dir string, ownsDir bool) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	port, err := testport.Free()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Dir: dir, Port: port, bin: bin, ownsDir: ownsDir,
		data: filepath.Join(dir, "data"), log: filepath.Join(dir, "postgres.log"),
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, pgUID(), pgGID()); err != nil {
			return nil, fmt.Errorf("pgtest: chown %s to postgres: %w", dir, err)
		}
	}
	if out, err := s.run("initdb", "-D", s.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	url, err := s.CreateDatabase(context.Background(), "test")
	if err != nil {
		s.Close()
		return nil, err
	}
	s.URL = url
	return s, nil
}

// run runs a PostgreSQL binary, as user postgres when we are root.
func (s *Server) run(name string, args ...string) ([]byte, error) {
	prog := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", prog}, args...)...)
	} else {
		cmd = exec.Command(prog, args...)
	}
	cmd.Dir = s.Dir
	return cmd.CombinedOutput()
}

// Start starts the (stopped) server and waits until it accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100", s.Port, s.Dir)
	var out []byte
	var err error
	// After a kill -9 the old backends may hold the shared memory for a
	// moment: retry.
	for i := 0; i < 20; i++ {
		out, err = s.run("pg_ctl", "-D", s.data, "-o", opts, "-l", s.log, "-w", "-t", "30", "start")
		if err == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, s.logTail())
}

// Stop stops the server: fast (-m fast: clean shutdown) or not (-m
// immediate: no checkpoint, crash recovery at the next start).
func (s *Server) Stop(fast bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mode := "immediate"
	if fast {
		mode = "fast"
	}
	if out, err := s.run("pg_ctl", "-D", s.data, "-m", mode, "-w", "stop"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Kill sends SIGKILL to the postmaster (its backends notice and exit); the
// server stays down until Start.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pid, err := s.pid()
	if err != nil {
		return fmt.Errorf("pgtest: kill: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("pgtest: kill %d: %w", pid, err)
	}
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// PID is the process id of the running server's postmaster (its backends
// and background workers are its children), for benchmarks that measure
// the CPU PostgreSQL spends.
func (s *Server) PID() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid()
}

func (s *Server) pid() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.data, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return 0, fmt.Errorf("bad postmaster.pid: %w", err)
	}
	return pid, nil
}

// Restart stops the server (fast: clean; otherwise immediate) and starts it
// again on the same port.
func (s *Server) Restart(fast bool) error {
	if err := s.Stop(fast); err != nil {
		return err
	}
	return s.Start()
}

// Close stops the server if it runs and removes its directory when Launch
// made it.
func (s *Server) Close() {
	_, _ = s.run("pg_ctl", "-D", s.data, "-m", "fast", "-w", "stop")
	if s.ownsDir {
		_ = os.RemoveAll(s.Dir)
	}
}

var nonWord = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates a fresh database for t on the server and returns its
// URL (dropped when t ends).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.dbs++
	n := s.dbs
	s.mu.Unlock()
	name := nonWord.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("t%d_%s", n, name)
	url, err := s.CreateDatabase(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, s.dbURL("postgres")); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	return url
}

// CreateDatabase creates database name and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.dbURL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w\n%s", err, s.logTail())
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.dbURL(name), nil
}

func (s *Server) dbURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Restart restarts the server that StartServer started for a test (see
// (*Server).Restart).
func Restart(t testing.TB, s *Server, fast bool) {
	t.Helper()
	if err := s.Restart(fast); err != nil {
		t.Fatal(err)
	}
}

// Kill kills the server's postmaster with SIGKILL (see (*Server).Kill).
func Kill(t testing.TB, s *Server) {
	t.Helper()
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
}

func pgUID() int { return lookupID(func(u *user.User) string { return u.Uid }) }
func pgGID() int { return lookupID(func(u *user.User) string { return u.Gid }) }

func lookupID(f func(*user.User) string) int {
	u, err := user.Lookup("postgres")
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(f(u))
	if err != nil {
		return -1
	}
	return n
}
