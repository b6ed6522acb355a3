package redisx

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
)

// TestOpenRefusesARedisThatMayEvictKeys: a server started with
// maxmemory-policy allkeys-lru is refused at once (not after the wait),
// with a message naming the policy and the fix.
func TestOpenRefusesARedisThatMayEvictKeys(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Args: []string{"--maxmemory-policy", "allkeys-lru"}})
	start := time.Now()
	c, err := Open(context.Background(), srv.URL, 30*time.Second)
	if err == nil {
		_ = c.Close()
		t.Fatal("Open accepted a Redis with maxmemory-policy allkeys-lru")
	}
	if !errors.Is(err, ErrEvictionPolicy) {
		t.Errorf("error does not wrap ErrEvictionPolicy: %v", err)
	}
	for _, want := range []string{srv.Addr, "allkeys-lru", "maxmemory-policy noeviction"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("Open waited %v before refusing; a policy does not change by waiting", waited)
	}
}

// TestReadinessTurnsUnhealthyWhenEvictionIsSwitchedOn: Ready passes on a
// noeviction server, fails once the policy is changed at runtime (here by
// CONFIG SET; the suite itself only reads INFO), and passes again when it
// is changed back.
func TestReadinessTurnsUnhealthyWhenEvictionIsSwitchedOn(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c, err := Open(ctx, srv.URL, 5*time.Second)
	if err != nil {
		t.Fatalf("Open of a noeviction Redis: %v", err)
	}
	defer c.Close()
	ready := Ready(c)
	if err := ready(ctx); err != nil {
		t.Fatalf("ready on noeviction: %v", err)
	}
	if err := srv.Client.ConfigSet(ctx, "maxmemory-policy", "volatile-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if err := ready(ctx); err == nil || !errors.Is(err, ErrEvictionPolicy) || !strings.Contains(err.Error(), "volatile-lru") {
		t.Fatalf("ready after switching to volatile-lru: %v", err)
	}
	if err := srv.Client.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := ready(ctx); err != nil {
		t.Fatalf("ready after switching back: %v", err)
	}
	srv.Stop()
	if err := ready(ctx); err == nil {
		t.Fatal("ready with Redis down")
	}
}

// TestEveryClusterPrimaryMustNotEvict: on a Redis Cluster every master is
// checked, not just the one a command happens to reach: one master of
// three switched to allkeys-lru turns readiness unhealthy naming that
// master, and Open refuses the cluster.
func TestEveryClusterPrimaryMustNotEvict(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx := context.Background()
	c, err := Open(ctx, cl.URL, 10*time.Second)
	if err != nil {
		t.Fatalf("Open of a noeviction cluster: %v", err)
	}
	defer c.Close()
	ready := Ready(c)
	if err := ready(ctx); err != nil {
		t.Fatalf("ready on noeviction: %v", err)
	}
	bad := cl.Nodes[2]
	if err := bad.Client.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	for range 5 { // whichever master answers first, the bad one is never missed
		if err := ready(ctx); err == nil || !strings.Contains(err.Error(), bad.Addr) || !strings.Contains(err.Error(), "allkeys-lru") {
			t.Fatalf("ready with %s on allkeys-lru: %v", bad.Addr, err)
		}
	}
	if c2, err := Open(ctx, cl.URL, 10*time.Second); err == nil {
		_ = c2.Close()
		t.Fatal("Open accepted a cluster with a master on allkeys-lru")
	} else if !errors.Is(err, ErrEvictionPolicy) {
		t.Fatalf("Open: %v", err)
	}
}

func TestInfoField(t *testing.T) {
	info := "# Memory\r\nused_memory:1024\r\nmaxmemory_policy:noeviction\r\nmaxmemory_policy_x:1\r\n"
	if v, ok := infoField(info, "maxmemory_policy"); !ok || v != "noeviction" {
		t.Errorf("maxmemory_policy = %q, %v", v, ok)
	}
	if _, ok := infoField(info, "maxmemory"); ok {
		t.Error("found a field that is not there")
	}
}
