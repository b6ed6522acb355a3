package autobatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentCallsShareBatches: every caller gets its own result or
// error, and calls made together share batches no larger than max.
func TestConcurrentCallsShareBatches(t *testing.T) {
	var batches, biggest atomic.Int64
	release := make(chan struct{})
	b := New(8, 1, time.Second, func(ctx context.Context, reqs []int) ([]string, []error) {
		if batches.Add(1) == 1 {
			<-release // the first batch is slow: the others gather meanwhile
		}
		if n := int64(len(reqs)); n > biggest.Load() {
			biggest.Store(n)
		}
		res, errs := make([]string, len(reqs)), make([]error, len(reqs))
		for i, r := range reqs {
			if r%5 == 0 {
				errs[i] = fmt.Errorf("no %d", r)
			} else {
				res[i] = fmt.Sprint("v", r)
			}
		}
		return res, errs
	})
	const n = 100
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := b.Do(context.Background(), i)
			switch {
			case i%5 == 0 && (err == nil || err.Error() != fmt.Sprint("no ", i)):
				errc <- fmt.Errorf("call %d: err %v", i, err)
			case i%5 != 0 && (err != nil || got != fmt.Sprint("v", i)):
				errc <- fmt.Errorf("call %d: %q, %v", i, got, err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if batches.Load() >= n || biggest.Load() > 8 || biggest.Load() < 2 {
		t.Errorf("%d batches, biggest %d: want shared batches of at most 8", batches.Load(), biggest.Load())
	}
}

// TestCallerContextEnds: a caller whose context ends stops waiting.
func TestCallerContextEnds(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	b := New(4, 1, time.Second, func(ctx context.Context, reqs []int) ([]int, []error) {
		<-block
		return make([]int, len(reqs)), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Do(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v, want the caller's deadline", err)
	}
}
