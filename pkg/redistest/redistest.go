// Package redistest starts a private redis-server for a test, on a free
// port in a temporary directory, and stops it when the test ends. Tests never
// depend on a Redis already running on the machine.
package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/testport"
)

// Server is a running redis-server.
type Server struct {
	Addr   string
	URL    string
	Dir    string
	Client *redis.Client
	cmd    *exec.Cmd
	args   []string
	t      testing.TB
}

// Options tune the server.
type Options struct {
	// AOF turns on the append-only file with appendfsync always.
	AOF bool
	// Args are further redis-server arguments, e.g. "--maxmemory-policy",
	// "allkeys-lru".
	Args []string
}

// Start launches redis-server and waits until it answers.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found on PATH (apt-get install redis-server): %v", err)
	}
	dir := t.TempDir()
	port := FreePort(t)
	if slices.Contains(o.Args, "--cluster-enabled") {
		port = FreeClusterPort(t) // its cluster bus listens on port+10000
	}
	aof := "no"
	if o.AOF {
		aof = "yes"
	}
	s := &Server{
		Addr: "127.0.0.1:" + strconv.Itoa(port),
		Dir:  dir,
		t:    t,
		args: []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", aof, "--appendfsync", "always",
			"--dir", dir, "--pidfile", filepath.Join(dir, "redis.pid"),
			"--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"),
		},
	}
	s.args = append(s.args, o.Args...)
	s.URL = "redis://" + s.Addr + "/0"
	s.cmd = s.launch(bin)
	s.Client = redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() {
		_ = s.Client.Close()
		s.Stop()
	})
	return s
}

func (s *Server) launch(bin string) *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(bin, s.args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			s.t.Fatalf("redis-server did not answer on %s:\n%s", s.Addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd
}

// Stop kills the server (SIGKILL: nothing is flushed beyond what AOF with
// appendfsync always already has).
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart kills the server and starts it again on the same port and dir.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	bin, _ := exec.LookPath("redis-server")
	s.cmd = s.launch(bin)
}

// FreePort returns a TCP port that was free a moment ago (testport.Free).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := testport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreeClusterPort returns a port for a Redis Cluster node: it and its
// cluster bus port (+10000) were free a moment ago.
func FreeClusterPort(t testing.TB) int {
	t.Helper()
	port, err := testport.FreeWith(10000)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// String describes the server.
func (s *Server) String() string { return fmt.Sprintf("redis-server at %s (%s)", s.Addr, s.Dir) }

// Cluster is a Redis Cluster of masters only, each a Server.
type Cluster struct {
	Nodes []*Server
	URL   string // redis-cluster://a,b,c (pkg/redisx's form)
}

// StartCluster launches masters redis-servers with cluster-enabled yes (each
// started with opts), joins them with redis-cli --cluster create (no
// replicas) and waits until every node reports cluster_state:ok.
func StartCluster(t testing.TB, masters int, opts ...Options) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found on PATH (apt-get install redis-server): %v", err)
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	c := &Cluster{}
	var addrs []string
	for range masters {
		dir := t.TempDir()
		n := Start(t, Options{AOF: o.AOF, Args: append([]string{
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "5000",
		}, o.Args...)})
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		for {
			info, err := n.Client.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no cluster_state:ok: %v %s", n, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c.URL = "redis-cluster://" + strings.Join(addrs, ",")
	return c
}
