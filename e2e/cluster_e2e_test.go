package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redistest"
)

// redisCluster is three redis-server masters with cluster-enabled yes,
// joined by redis-cli --cluster create, each in its own temp dir.
type redisCluster struct {
	Addrs []string
	URL   string // redis-cluster://a,b,c
}

func startRedisCluster(t testing.TB) *redisCluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found on PATH: %v", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found on PATH: %v", err)
	}
	rc := &redisCluster{}
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		port := redistest.FreeClusterPort(t) // and its cluster bus port, +10000
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "5000",
			"--save", "", "--appendonly", "yes", "--appendfsync", "always",
			"--dir", dir, "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		c := redis.NewClient(&redis.Options{Addr: addr})
		eventually(t, 10*time.Second, "redis-server on "+addr, func() bool { return c.Ping(context.Background()).Err() == nil })
		_ = c.Close()
		rc.Addrs = append(rc.Addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, rc.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range rc.Addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		eventually(t, 20*time.Second, "cluster_state:ok on "+a, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		_ = c.Close()
	}
	rc.URL = "redis-cluster://" + strings.Join(rc.Addrs, ",")
	return rc
}

// onCluster starts the suite against a fresh three-master Redis Cluster.
func onCluster(t testing.TB, o SuiteOptions) *Suite {
	t.Helper()
	rc := startRedisCluster(t)
	s := startSuiteURL(t, nil, rc.URL, o)
	clusterLogDirs = append(clusterLogDirs, s.logDir)
	return s
}

// TestRedisClusterSignedDelivery repeats TestSignedDeliveryEndToEnd with
// REDIS_URL=redis-cluster://… (three masters).
func TestRedisClusterSignedDelivery(t *testing.T) {
	signedDeliveryScenario(t, onCluster)
	checkLogsForClusterErrors(t)
}

// TestRedisClusterRetriesFollowTheSchedule repeats
// TestRetriesFollowTheSchedule on the cluster.
func TestRedisClusterRetriesFollowTheSchedule(t *testing.T) {
	retryScenario(t, onCluster)
	checkLogsForClusterErrors(t)
}

// checkLogsForClusterErrors fails on CROSSSLOT or script errors that a
// service logged but survived (the scenario itself may still pass).
var clusterLogDirs []string

func checkLogsForClusterErrors(t *testing.T) {
	t.Helper()
	for _, dir := range clusterLogDirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "CROSSSLOT") || strings.Contains(line, "ERR Error running script") ||
					strings.Contains(line, "Script attempted to access") {
					t.Errorf("%s: %s", filepath.Base(f), line)
				}
			}
		}
	}
	clusterLogDirs = nil
}
