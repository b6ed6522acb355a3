package e2e

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redistest"
)

// makeRun is scripts/run.sh (what `make run` calls) running in its own
// process group, with the private servers it says it started.
type makeRun struct {
	cmd      *exec.Cmd
	gateway  string
	logPath  string
	redisURL string // from the script's "redis-server … at <url>" line
	pgDir    string // from "postgres … in <dir> at <url>"; empty without PostgreSQL
	pgURL    string
}

var (
	runRedisLine = regexp.MustCompile(`redis-server \(.*\) in \S+ at (redis://\S+)`)
	runPGLine    = regexp.MustCompile(`postgres \(fsync on\) in (\S+) at (postgres://\S+)`)
)

// startMakeRun runs scripts/run.sh with REDIS_URL and DATABASE_URL unset and
// free service ports, plus env, and waits until the gateway is healthy.
func startMakeRun(t *testing.T, env ...string) *makeRun {
	t.Helper()
	root, _ := filepath.Abs("..")
	port := func() string { return "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) }
	r := &makeRun{gateway: port(), logPath: filepath.Join(t.TempDir(), "run.log")}
	r.cmd = exec.Command(filepath.Join(root, "scripts", "run.sh"))
	r.cmd.Env = append(os.Environ(), "BIN="+binDir, "GATEWAY_ADDR="+r.gateway, "REGISTRY_ADDR="+port(),
		"INGESTION_ADDR="+port(), "DELIVERY_ADDR="+port(), "REDIS_URL=", "DATABASE_URL=", "REDIS_PORT=", "PG_PORT=")
	r.cmd.Env = append(r.cmd.Env, env...)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, _ := os.Create(r.logPath)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = logf.Close()
	pgid := r.cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		// pg_ctl starts PostgreSQL in its own session: stop it by its pid.
		if r.pgDir != "" {
			if b, err := os.ReadFile(filepath.Join(r.pgDir, "data", "postmaster.pid")); err == nil {
				if pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0]); err == nil {
					_ = syscall.Kill(pid, syscall.SIGQUIT)
				}
			}
		}
		if t.Failed() {
			out, _ := os.ReadFile(r.logPath)
			t.Logf("run.sh output:\n%s", out)
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	eventually(t, 90*time.Second, "make run's suite healthy", func() bool {
		resp, err := client.Get("http://" + r.gateway + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	out, _ := os.ReadFile(r.logPath)
	if m := runRedisLine.FindSubmatch(out); m != nil {
		r.redisURL = string(m[1])
	} else {
		t.Fatal("run.sh did not say which Redis it started")
	}
	if m := runPGLine.FindSubmatch(out); m != nil {
		r.pgDir, r.pgURL = string(m[1]), string(m[2])
	}
	return r
}

// stop sends SIGTERM and checks the script ends and every process it
// started is gone, PostgreSQL (in its own session) included.
func (r *makeRun) stop(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run.sh did not stop on SIGTERM")
	}
	pgid := r.cmd.Process.Pid
	eventually(t, 10*time.Second, "every process of the group gone", func() bool {
		return syscall.Kill(-pgid, 0) != nil
	})
	if r.pgDir != "" {
		addr := hostPort(t, r.pgURL)
		eventually(t, 10*time.Second, "the private PostgreSQL stopped", func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				return false
			}
			_, err = os.Stat(r.pgDir)
			return os.IsNotExist(err)
		})
	}
}

// redisIsOurs checks the Redis at the URL the script printed is a child of
// the script (its INFO process_id's parent is run.sh) and holds the suite's
// data (the registry's secrets key check).
func (r *makeRun) redisIsOurs(t *testing.T) {
	t.Helper()
	opt, err := redis.ParseURL(r.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	pid := infoValue(t, c, "server", "process_id")
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Fatalf("redis-server pid %s: %v", pid, err)
	}
	// /proc/<pid>/stat: pid (comm) state ppid …
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) < 2 || fields[1] != strconv.Itoa(r.cmd.Process.Pid) {
		t.Errorf("the Redis at %s (pid %s, parent %v) was not started by run.sh (pid %d)", r.redisURL, pid, fields[1:2], r.cmd.Process.Pid)
	}
	if n, err := c.Exists(context.Background(), "wh:secrets:keycheck").Result(); err != nil || n != 1 {
		t.Errorf("the suite did not write to the Redis run.sh started (%s): %v %v", r.redisURL, n, err)
	}
}

func infoValue(t *testing.T, c *redis.Client, section, field string) string {
	t.Helper()
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return v
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return ""
}

func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// postgresInstalled reports whether run.sh can start a private PostgreSQL.
func postgresInstalled() bool {
	if _, err := exec.LookPath("initdb"); err == nil {
		return true
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	return len(m) > 0
}

// TestMakeRunStartsAndStopsTheSuite runs scripts/run.sh with its own
// private Redis and PostgreSQL, checks the suite answers on them, then sends
// SIGTERM and checks every process it started is gone.
func TestMakeRunStartsAndStopsTheSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	r := startMakeRun(t)
	r.redisIsOurs(t)
	if postgresInstalled() {
		if r.pgURL == "" {
			t.Fatal("run.sh started no PostgreSQL")
		}
		if !strings.Contains(r.pgURL, "/webhooks?") {
			t.Errorf("DATABASE_URL %s: want the database webhooks", r.pgURL)
		}
		if psql, err := exec.LookPath("psql"); err == nil {
			out, err := exec.Command(psql, r.pgURL, "-XAtc", "SHOW data_directory").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != filepath.Join(r.pgDir, "data") {
				t.Errorf("PostgreSQL at %s: data_directory %q (%v), want %s", r.pgURL, out, err, filepath.Join(r.pgDir, "data"))
			}
		}
	}
	r.stop(t)
}

// TestMakeRunUsesOnlyServersItStarted: when the port run.sh would pick
// first (REDIS_PORT, PG_PORT) is taken — by something that is not Redis,
// or by another redis-server — it starts its own servers on free ports and
// the suite uses them, never the other one.
func TestMakeRunUsesOnlyServersItStarted(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	t.Run("ports taken by another program", func(t *testing.T) {
		var taken []string
		for range 2 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() { // accepts and never answers, like a busy stranger
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					defer c.Close()
				}
			}()
			taken = append(taken, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		}
		r := startMakeRun(t, "REDIS_PORT="+taken[0], "PG_PORT="+taken[1])
		if strings.HasSuffix(hostPort(t, r.redisURL), ":"+taken[0]) {
			t.Errorf("REDIS_URL %s is on the taken port", r.redisURL)
		}
		if r.pgURL != "" && strings.HasSuffix(hostPort(t, r.pgURL), ":"+taken[1]) {
			t.Errorf("DATABASE_URL %s is on the taken port", r.pgURL)
		}
		if postgresInstalled() && r.pgURL == "" {
			t.Error("run.sh started no PostgreSQL")
		}
		r.redisIsOurs(t)
		r.stop(t)
	})
	t.Run("a decoy redis-server on its port", func(t *testing.T) {
		decoy := redistest.Start(t)
		_, decoyPort, _ := net.SplitHostPort(decoy.Addr)
		r := startMakeRun(t, "REDIS_PORT="+decoyPort)
		r.redisIsOurs(t)
		if n, err := decoy.Client.DBSize(context.Background()).Result(); err != nil || n != 0 {
			t.Errorf("the suite wrote %d keys (%v) to the decoy Redis at %s", n, err, decoy.Addr)
		}
		r.stop(t)
	})
}
