package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestExpiryAndEviction(t *testing.T) {
	now := time.Unix(1000, 0)
	c := New[string, int](Options[int]{MaxEntries: 2, TTL: time.Second, Now: func() time.Time { return now }})
	c.Set("a", 1)
	c.Set("b", 2)
	if _, ok := c.Get("a"); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.Set("c", 3)
	if _, ok := c.Get("b"); ok {
		t.Fatal("b should have been evicted (least recently used)")
	}
	now = now.Add(time.Second)
	if _, ok := c.Get("a"); ok {
		t.Fatal("a should have expired")
	}
}

func TestCostBudget(t *testing.T) {
	c := New[string, []byte](Options[[]byte]{MaxEntries: 100, TTL: time.Minute, MaxCost: 10,
		Cost: func(b []byte) int64 { return int64(len(b)) }})
	c.Set("a", make([]byte, 6))
	c.Set("b", make([]byte, 6))
	if _, ok := c.Get("a"); ok || c.Len() != 1 {
		t.Fatalf("budget not enforced: %d entries", c.Len())
	}
	c.Set("huge", make([]byte, 11))
	if _, ok := c.Get("huge"); ok {
		t.Fatal("a value over the whole budget was cached")
	}
}

func TestLoadOncePerKey(t *testing.T) {
	c := New[string, int](Options[int]{MaxEntries: 10, TTL: time.Minute})
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Load(context.Background(), "k", func(context.Context) (int, error) {
				calls.Add(1)
				<-release
				return 7, nil
			})
			if err != nil || v != 7 {
				t.Errorf("Load = %d, %v", v, err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("loaded %d times", calls.Load())
	}
	_, err := c.Load(context.Background(), "bad", func(context.Context) (int, error) { return 0, errors.New("down") })
	if err == nil {
		t.Fatal("error not returned")
	}
	if _, ok := c.Get("bad"); ok {
		t.Fatal("an error was cached")
	}
}
