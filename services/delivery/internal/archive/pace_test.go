package archive

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// runArchiver runs f's archiver with a poll of an hour until the test ends.
func runArchiver(t *testing.T, f *fixture) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.arch.Run(ctx, time.Hour) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitMoved waits until none of ids is in Redis any more.
func (f *fixture) waitMoved(ids []string) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for f.inRedis(id) {
			if time.Now().After(deadline) {
				f.t.Fatalf("%s is still in Redis after 30 s", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A backlog (full batches) drains pass after pass, without waiting for
// the poll.
func TestRunDrainsFullBatchesWithoutWaitingForThePoll(t *testing.T) {
	f := newFixture(t)
	f.arch.batch = 5
	ids := f.publishKey("upload-1", 12) // one line, so one shard: three batches
	f.finish(delivery.StatusSucceeded)
	runArchiver(t, f)
	f.waitMoved(ids)
}

// Under steady load a pass that found no full batch is followed by the
// next only after the poll, so that each moves a poll's worth of work: a
// delivery that ended during a pass, in a shard the pass had read, waits.
func TestRunWaitsForThePollAfterAPassWithoutAFullBatch(t *testing.T) {
	f := newFixture(t)
	ids := f.publishKey("upload-1", 2)
	f.finish(delivery.StatusSucceeded)
	var late []string
	ended := make(chan struct{})
	var once sync.Once
	f.arch.afterCommit = func() error {
		once.Do(func() { // the same line, so the shard just read
			late = f.publishKey("upload-1", 1)
			f.finish(delivery.StatusSucceeded)
			close(ended)
		})
		return nil
	}
	runArchiver(t, f)
	f.waitMoved(ids)
	<-ended
	time.Sleep(500 * time.Millisecond) // a pass at once would have moved it by now
	if !f.inRedis(late[0]) {
		t.Fatal("a pass ran again at once after one without a full batch")
	}
}
