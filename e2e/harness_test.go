package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/pgtest"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

// The suite's binaries, built once by TestMain.
var binDir string

// raceEnabled is set when this test binary has the race detector
// (race_test.go); TestMain then builds the services with -race as well.
var raceEnabled bool

const (
	adminToken    = "test-admin-token"
	producerToken = "test-producer-token"
	internalToken = "test-internal-token"
	secretsKey    = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=" // 32 bytes, tests only
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "voxscriber-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	args := []string{"build", "-o", dir + "/"}
	if raceEnabled {
		args = append(args, "-race")
	}
	for _, s := range []string{"registry", "ingestion", "delivery", "gateway"} {
		args = append(args, "github.com/voxscriber/webhooks/services/"+s+"/cmd/"+s)
	}
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the suite:", err)
		os.Exit(1)
	}
	code := m.Run()
	if pg != nil {
		pg.Close()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// pg is the PostgreSQL of the history tier, started by the first suite;
// each suite gets its own database on it (DATABASE_URL), unless its
// options set DATABASE_URL.
var (
	pg     *pgtest.Server
	pgOnce sync.Once
	pgErr  error
)

func historyDatabase(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() { pg, pgErr = pgtest.Launch() })
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	return pg.NewDatabase(t)
}

// Suite is the four services running as separate processes against a
// private redis-server.
type Suite struct {
	t     testing.TB
	Redis *redistest.Server
	env   []string
	Addrs map[string]string
	procs map[string][]*exec.Cmd
	// history is the PostgreSQL server the suite's history database is on.
	history *pgtest.Server
	mu      sync.Mutex
	BaseURL string
	HTTP    *http.Client
	logDir  string
	binDir  string
}

// SuiteOptions adjusts the environment of every service.
type SuiteOptions struct {
	Env map[string]string
	// ServiceEnv adds variables to one service's processes only (by name),
	// e.g. a METRICS_ADDR per service.
	ServiceEnv map[string]map[string]string
	// HTTPS: the gateway serves TLS (GATEWAY_TLS_* in the env); the
	// suite's HTTP client uses this configuration (its RootCAs).
	HTTPS *tls.Config
	// HistoryDown: the history store is not expected to answer at start
	// (otherwise the suite waits until /healthz reports it reachable).
	HistoryDown bool
	// BinDir runs the services' binaries from this directory instead of
	// the ones TestMain built (another build of the suite, e.g. an older
	// version for an upgrade test).
	BinDir string
	// PG is the PostgreSQL server of the history tier when the test runs
	// its own (to stop or kill it): DATABASE_URL is its URL unless Env
	// sets one, and the benchmarks count its CPU.
	PG *pgtest.Server
}

func startSuite(t testing.TB, o SuiteOptions) *Suite {
	t.Helper()
	return startSuiteOn(t, redistest.Start(t, redistest.Options{AOF: true}), o)
}

func startSuiteOn(t testing.TB, r *redistest.Server, o SuiteOptions) *Suite {
	t.Helper()
	return startSuiteURL(t, r, r.URL, o)
}

// startSuiteURL runs the suite against REDIS_URL=url (a Redis Cluster, say);
// r, when not nil, is the standalone server behind it.
func startSuiteURL(t testing.TB, r *redistest.Server, url string, o SuiteOptions) *Suite {
	t.Helper()
	s := &Suite{t: t, Redis: r, Addrs: map[string]string{}, procs: map[string][]*exec.Cmd{}, HTTP: &http.Client{Timeout: 30 * time.Second}, logDir: t.TempDir(), binDir: binDir}
	if o.BinDir != "" {
		s.binDir = o.BinDir
	}
	for _, name := range []string{"registry", "ingestion", "delivery", "gateway"} {
		s.Addrs[name] = "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	}
	env := map[string]string{
		"REDIS_URL":              url,
		"ADMIN_TOKEN":            adminToken,
		"PRODUCER_TOKEN":         producerToken,
		"INTERNAL_TOKEN":         internalToken,
		"SECRETS_KEY":            secretsKey,
		"ENDPOINT_ALLOW_HTTP":    "true",
		"ENDPOINT_ALLOWED_CIDRS": "127.0.0.0/8",
		"REGISTRY_ADDR":          s.Addrs["registry"],
		"INGESTION_ADDR":         s.Addrs["ingestion"],
		"DELIVERY_ADDR":          s.Addrs["delivery"],
		"GATEWAY_ADDR":           s.Addrs["gateway"],
		"LOG_LEVEL":              "warn",
	}
	for k, v := range o.Env {
		env[k] = v
	}
	s.history = o.PG
	if _, ok := env["DATABASE_URL"]; !ok { // the history tier: a fresh database per suite
		if o.PG != nil {
			env["DATABASE_URL"] = o.PG.URL
		} else {
			env["DATABASE_URL"] = historyDatabase(t)
			s.history = pg
		}
	}
	for k, v := range env {
		s.env = append(s.env, k+"="+v)
	}
	s.BaseURL = "http://" + s.Addrs["gateway"]
	if o.HTTPS != nil {
		s.BaseURL = "https://" + s.Addrs["gateway"]
		s.HTTP.Transport = &http.Transport{TLSClientConfig: o.HTTPS}
	}
	for _, name := range []string{"registry", "ingestion", "delivery", "gateway"} {
		s.Start(name, o.ServiceEnv[name])
	}
	t.Cleanup(s.StopAll)
	s.WaitHealthy(60 * time.Second)
	if !o.HistoryDown {
		s.waitHistory(60 * time.Second)
	}
	return s
}

// Start launches one more process of a service; extra overrides env (a
// second delivery process needs its own DELIVERY_ADDR).
func (s *Suite) Start(name string, extra map[string]string) *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.binDir, name))
	cmd.Env = append(os.Environ(), s.env...)
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s.mu.Lock()
	n := len(s.procs[name])
	s.mu.Unlock()
	logf, err := os.Create(filepath.Join(s.logDir, fmt.Sprintf("%s-%d.log", name, n)))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	s.mu.Lock()
	s.procs[name] = append(s.procs[name], cmd)
	s.mu.Unlock()
	return cmd
}

// Kill sends SIGKILL to a process and reaps it.
func (s *Suite) Kill(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait() // sets ProcessState, so StopAll skips it
}

// StopAll sends SIGTERM to every process and waits; on test failure it
// prints the service logs.
func (s *Suite) StopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cmds := range s.procs {
		for _, c := range cmds {
			if c.ProcessState == nil {
				_ = c.Process.Signal(syscall.SIGTERM)
			}
		}
	}
	for _, cmds := range s.procs {
		for _, c := range cmds {
			if c.ProcessState == nil {
				done := make(chan struct{})
				go func() { _, _ = c.Process.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					_ = c.Process.Kill()
				}
			}
		}
	}
	s.procs = map[string][]*exec.Cmd{}
	if raceEnabled {
		files, _ := filepath.Glob(filepath.Join(s.logDir, "*.log"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
				b = b[i:]
				if len(b) > 8000 {
					b = b[:8000]
				}
				s.t.Errorf("the race detector found a data race in %s:\n%s", filepath.Base(f), b)
			}
		}
	}
	if s.t.Failed() {
		files, _ := filepath.Glob(filepath.Join(s.logDir, "*.log"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			s.t.Logf("---- %s ----\n%s", filepath.Base(f), b)
		}
	}
}

// WaitHealthy polls the gateway's /healthz until it answers 200.
func (s *Suite) WaitHealthy(d time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := s.HTTP.Get(s.BaseURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("suite not healthy after %v (last: %v)", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHistory polls /healthz until it reports the history store reachable:
// the services open it in the background, and on a loaded machine the
// first open (migrations, partitions) can outlast their first wait.
func (s *Suite) waitHistory(d time.Duration) {
	s.t.Helper()
	eventually(s.t, d, "the history store reachable", func() bool {
		resp, err := s.HTTP.Get(s.BaseURL + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var h struct {
			HistoryStore string `json:"historyStore"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&h)
		return h.HistoryStore == "reachable"
	})
}

// Do sends a REST request with a bearer token and decodes the JSON answer.
func (s *Suite) Do(method, path, token string, body any, out any) (int, []byte) {
	s.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.BaseURL+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.HTTP.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

// MustDo is Do that fails the test unless the status is want.
func (s *Suite) MustDo(want int, method, path, token string, body any, out any) []byte {
	s.t.Helper()
	code, raw := s.Do(method, path, token, body, out)
	if code != want {
		s.t.Fatalf("%s %s = %d, want %d: %s", method, path, code, want, raw)
	}
	return raw
}

// NewAccount creates an account over REST and returns its id and API key.
func (s *Suite) NewAccount(name string) (id, key string) {
	s.t.Helper()
	var out struct {
		Account struct{ ID string } `json:"account"`
		APIKey  string              `json:"apiKey"`
	}
	s.MustDo(200, "POST", "/v1/accounts", adminToken, map[string]any{"name": name}, &out)
	if out.Account.ID == "" || out.APIKey == "" {
		s.t.Fatalf("account response lacks id or key: %+v", out)
	}
	return out.Account.ID, out.APIKey
}

// Endpoint is the REST view of an endpoint.
type Endpoint struct {
	ID         string   `json:"id"`
	URL        string   `json:"url"`
	EventTypes []string `json:"eventTypes"`
	Status     string   `json:"status"`
	Ordering   string   `json:"ordering"`
}

// NewEndpoint registers an endpoint and returns it with its secret.
func (s *Suite) NewEndpoint(key, url string, types ...string) (Endpoint, string) {
	s.t.Helper()
	var out struct {
		Endpoint Endpoint `json:"endpoint"`
		Secret   string   `json:"secret"`
	}
	s.MustDo(200, "POST", "/v1/endpoints", key, map[string]any{"url": url, "eventTypes": types}, &out)
	if !strings.HasPrefix(out.Secret, "whsec_") {
		s.t.Fatalf("create endpoint: secret %q", out.Secret)
	}
	return out.Endpoint, out.Secret
}

// Ingestion returns a gRPC client to the ingestion service carrying the
// producer token.
func (s *Suite) Ingestion() (ingestionv1.IngestionServiceClient, context.Context) {
	s.t.Helper()
	cc, err := grpc.NewClient(s.Addrs["ingestion"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cc.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+producerToken)
	return ingestionv1.NewIngestionServiceClient(cc), ctx
}

// eventually polls f until it returns true or d passes.
func eventually(t testing.TB, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
