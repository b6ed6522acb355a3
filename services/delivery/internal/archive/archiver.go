// Package archive moves ended deliveries, their attempts and their events
// from Redis to the PostgreSQL history tier (pkg/history), crash-safely,
// and reads both tiers as one (issue #12, "History leaves RAM").
//
// The archiver of every delivery process takes, per shard under a short
// lease (wh:archiver:{s<n>}), batches of the shard's ended index
// (wh:ended:{s<n>}: deliveries that ended, and parked ones past
// PARKED_MOVE_AFTER), marks them ended in their events' hashes (which
// tells which events have no live delivery left), writes the batch with
// history.Archive, and only after that commit deletes each delivery from
// Redis with a compare-and-delete on the version archived, then the events
// that are done. A crash anywhere loses nothing (Redis is cleared only
// after the commit) and lists nothing twice (Archive is an upsert; the
// merged reads de-duplicate).
package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

// Tunables of the archiver.
const (
	DefaultBatch = 500
	DefaultPoll  = time.Second
	// leaseTTL bounds how long a crashed process's shards wait for another
	// archiver. Its owner renews it every pass; one that lapses mid-batch
	// only makes two archivers move the same records, which the upsert
	// (newer version wins) and the compare-and-delete make harmless.
	leaseTTL    = 10 * time.Second
	maxBackoff  = 30 * time.Second
	fanoutGrace = 2 * time.Second // before a waiting event is looked at again
	// A delivery whose event's fan-out is not marked is looked at again
	// after its age, within these bounds.
	fanoutHoldMin  = 2 * time.Second
	fanoutHoldMax  = 5 * time.Minute
	waitingPerPass = 200
)

// Archiver moves ended deliveries and done events to history.
type Archiver struct {
	q      *redisqueue.Queue
	events *eventstore.Store
	store  *history.Lazy
	log    *slog.Logger
	owner  string
	batch  int
	now    func() time.Time
	// afterCommit, when set (tests), runs after Archive committed and
	// before anything is deleted from Redis; an error stops the pass there,
	// as a crash would.
	afterCommit func() error
	// afterDeliveries, when set (tests), runs after the deliveries' delete
	// and before the done events' (a crash there).
	afterDeliveries func() error
}

// New returns an Archiver.
func New(q *redisqueue.Queue, events *eventstore.Store, store *history.Lazy, log *slog.Logger) *Archiver {
	if log == nil {
		log = slog.Default()
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Archiver{q: q, events: events, store: store, log: log, owner: hex.EncodeToString(b), batch: DefaultBatch, now: time.Now}
}

// Run archives every poll until ctx ends, backing off (1 s doubling to
// 30 s) while PostgreSQL fails; the backlog waits in Redis meanwhile. A
// pass that found a full batch in some shard is followed by the next at
// once, so a backlog drains at full speed. Any other waits poll: a pass
// costs a few Redis round trips and a PostgreSQL transaction per shard
// whatever it moves, so under steady load each moves a poll's worth of
// deliveries at a time rather than the handful that ended meanwhile.
func (a *Archiver) Run(ctx context.Context, poll time.Duration) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	go a.adoptLegacy(ctx)
	backoff := poll
	for {
		_, more, err := a.pass(ctx)
		if ctx.Err() != nil {
			for s := range redisqueue.Shards {
				a.q.ReleaseShard(context.WithoutCancel(ctx), s, a.owner)
			}
			return
		}
		wait := poll
		switch {
		case err != nil:
			a.log.Warn("archiver: pass failed; the backlog waits in Redis", "error", err.Error(), "retry_in", backoff.String())
			wait, backoff = backoff, min(backoff*2, maxBackoff)
		case more:
			backoff = poll
			continue // a full batch: a backlog to drain
		default:
			backoff = poll
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// legacyEvery is how often the sweep of the old layout repeats while it
// still finds records (processes of the old build may run beside this one
// during a rollout).
const legacyEvery = 10 * time.Minute

// adoptLegacy files the deliveries the build before the history tier left
// in Redis (redisqueue.AdoptLegacy) into this build's indexes, so that the
// ended and parked ones move to history, and refiles the ordered parked
// ones the build before ordered parked work moved filed at
// PARKED_RETENTION (redisqueue.RefileOrderedParked): at start-up, then
// every legacyEvery until a sweep finds none (recorded in Redis: later
// processes skip it).
func (a *Archiver) adoptLegacy(ctx context.Context) {
	for {
		n, err := a.q.AdoptLegacy(ctx)
		if err == nil {
			var r int
			r, err = a.q.RefileOrderedParked(ctx)
			n += r
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			a.log.Warn("archiver: sweep of the pre-history layout failed; retrying", "error", err.Error())
		case n == 0:
			return
		default:
			a.log.Info("archiver: adopted or refiled deliveries of an earlier build's layout", "deliveries", n)
		}
		wait := legacyEvery
		if err != nil {
			wait = 10 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// RunOnce makes one pass over the shards whose lease it gets: one batch
// of each, and the events waiting for their fan-out. It returns how many
// deliveries it moved, and the first error.
func (a *Archiver) RunOnce(ctx context.Context) (int, error) {
	n, _, err := a.pass(ctx)
	return n, err
}

// pass is RunOnce; more reports that some shard had a full batch (of
// deliveries, or of events waiting for their fan-out), so that more may
// be due already.
func (a *Archiver) pass(ctx context.Context) (total int, more bool, err error) {
	store, err := a.store.Store()
	if err != nil {
		return 0, false, err
	}
	var errs []error
	for n := range redisqueue.Shards {
		ok, err := a.q.LeaseShard(ctx, n, a.owner, leaseTTL)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue // another process archives this shard
		}
		m, full, err := a.shard(ctx, store, n)
		total += m
		more = more || full
		if err != nil {
			errs = append(errs, err)
			if errors.Is(err, errStop) {
				break
			}
		}
		full, err = a.waiting(ctx, store, n)
		more = more || full
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, more, errors.Join(errs...)
}

var errStop = errors.New("archiver: stopped after commit")

// shard moves one batch of shard n; full reports that the batch was, and
// that some of it moved (a full batch of which nothing could move, all of
// it held back, is no reason to read it again at once).
func (a *Archiver) shard(ctx context.Context, store *history.Store, n int) (moved int, full bool, err error) {
	now := a.now()
	ended, err := a.q.TakeEnded(ctx, n, now, a.batch)
	if err != nil || len(ended) == 0 {
		return 0, false, err
	}
	moved, err = a.move(ctx, store, n, now, ended)
	return moved, len(ended) >= a.batch && moved > 0, err
}

// move moves the ended deliveries of shard n that TakeEnded read at now.
func (a *Archiver) move(ctx context.Context, store *history.Store, n int, now time.Time, ended []redisqueue.Ended) (int, error) {
	byEvent := map[string][]string{}
	for _, e := range ended {
		if !e.Delivery.Test {
			byEvent[e.Delivery.EventID] = append(byEvent[e.Delivery.EventID], e.Delivery.ID)
		}
	}
	states, err := a.events.MarkEnded(ctx, byEvent)
	if err != nil {
		return 0, err
	}
	// A delivery whose event's fan-out is not marked yet stays in Redis: the
	// publish was not acknowledged, its retry runs the fan-out again, and
	// Schedule (an upsert in Redis) must find the delivery there, or it
	// would create and send it a second time. It is looked at again after
	// a while that grows with its age (a publish nobody retries ends when
	// its event expires: then it moves).
	var hold []redisqueue.Postponed
	kept := ended[:0]
	for _, e := range ended {
		if st := states[e.Delivery.EventID]; !e.Delivery.Test && st.Event != nil && !st.Event.FanoutDone {
			wait := min(max(now.Sub(e.Delivery.UpdateTime), fanoutHoldMin), fanoutHoldMax)
			hold = append(hold, redisqueue.Postponed{ID: e.Delivery.ID, Until: now.Add(wait)})
			continue
		}
		kept = append(kept, e)
	}
	ended = kept
	if err := a.q.PostponeEnded(ctx, n, hold); err != nil {
		return 0, err
	}
	var b history.Batch
	var done, waiting []string
	for id, st := range states {
		switch {
		case st.Event == nil:
		case st.Done:
			b.Events = append(b.Events, toHistoryEvent(st.Event))
			done = append(done, id)
		case !st.Event.FanoutDone:
			waiting = append(waiting, id)
		}
	}
	if len(ended) == 0 {
		return 0, a.q.WaitForFanout(ctx, waiting, a.now())
	}
	uploads, err := a.uploads(ctx, store, ended, states)
	if err != nil {
		return 0, err
	}
	for i := range ended {
		d := &ended[i].Delivery
		b.Deliveries = append(b.Deliveries, history.DeliveryRecord{
			Delivery: toHistoryDelivery(d, uploads[d.EventID]),
			Attempts: toHistoryAttempts(ended[i].Attempts),
		})
	}
	var parkedEps []string
	for _, e := range ended {
		if e.Delivery.Status == delivery.StatusParked {
			parkedEps = append(parkedEps, e.Delivery.AccountID+"|"+e.Delivery.EndpointID)
		}
	}
	if err := a.q.NoteParkedInHistory(ctx, parkedEps); err != nil { // before they move: a resume looks there
		return 0, err
	}
	// Done events are filed on the waiting list before anything is deleted:
	// a crash after the deliveries' delete and before the events' leaves
	// them there, and a later pass (waiting) moves and deletes them; once
	// deleted here they leave the list.
	if err := a.q.WaitForFanout(ctx, done, a.now()); err != nil {
		return 0, err
	}
	res, err := store.Archive(ctx, b)
	if err != nil {
		return 0, err
	}
	if a.afterCommit != nil {
		if err := a.afterCommit(); err != nil {
			return 0, errors.Join(errStop, err)
		}
	}
	moved, err := a.deleteArchived(ctx, ended, res, done, waiting)
	if errors.Is(err, errStop) {
		return moved, err
	}
	// Filed again after the delete: a resume that read history before
	// this commit and forgot the endpoint before now would leave this work
	// (and a line it closed) behind otherwise.
	return moved, errors.Join(err, a.q.NoteParkedInHistory(ctx, parkedEps))
}

// uploads returns the upload id of each delivery's event: from Redis, or
// from history for an event already moved (a delivery revived after its
// event left Redis).
func (a *Archiver) uploads(ctx context.Context, store *history.Store, ended []redisqueue.Ended, states map[string]eventstore.EventState) (map[string]string, error) {
	out := map[string]string{}
	missing := map[string][]string{} // account -> event ids
	for _, e := range ended {
		d := &e.Delivery
		if d.Test {
			continue
		}
		if st := states[d.EventID]; st.Event != nil {
			out[d.EventID] = st.Event.UploadID
		} else {
			missing[d.AccountID] = append(missing[d.AccountID], d.EventID)
		}
	}
	for acct, ids := range missing {
		evs, err := store.GetEvents(ctx, acct, ids)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			out[e.ID] = e.UploadID
		}
	}
	return out, nil
}

// deleteArchived clears from Redis what the committed Archive holds.
func (a *Archiver) deleteArchived(ctx context.Context, ended []redisqueue.Ended, res history.Result, done, waiting []string) (int, error) {
	version := map[string]int64{}
	account := map[string]string{}
	for _, e := range ended {
		version[e.Delivery.ID] = e.Delivery.Version
		account[e.Delivery.ID] = e.Delivery.AccountID
	}
	var refs []redisqueue.Ref
	var forked []redisqueue.Renumbered
	for _, d := range res.Deliveries {
		if d.Newer > 0 { // history holds another copy: this one stays, renumbered to supersede it
			forked = append(forked, redisqueue.Renumbered{ID: d.ID, Version: version[d.ID], Newer: d.Newer})
			continue
		}
		refs = append(refs, redisqueue.Ref{ID: d.ID, AccountID: account[d.ID], Version: version[d.ID]})
	}
	if len(forked) > 0 {
		n, err := a.q.Renumber(ctx, forked, a.now())
		if err != nil {
			return 0, err
		}
		a.log.Error("history held another, older-updated copy of deliveries at a higher version; their Redis copies were kept and renumbered above it, to be archived again",
			"deliveries", len(forked), "renumbered", n, "example", forked[0].ID)
	}
	heldEvents := map[string]bool{}
	for _, id := range res.Events {
		heldEvents[id] = true
	}
	for _, qr := range res.Quarantined {
		switch qr.Kind {
		case "delivery":
			refs = append(refs, redisqueue.Ref{ID: qr.ID, AccountID: account[qr.ID], Version: version[qr.ID]})
		case "event":
			heldEvents[qr.ID] = true
		}
	}
	deleted, err := a.q.DeleteArchived(ctx, refs, a.now())
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, ok := range deleted {
		if ok {
			moved++
		}
	}
	if a.afterDeliveries != nil {
		if err := a.afterDeliveries(); err != nil {
			return moved, errors.Join(errStop, err)
		}
	}
	var evs []string
	for _, id := range done {
		if heldEvents[id] {
			evs = append(evs, id)
		}
	}
	if len(evs) > 0 {
		if _, err := a.events.DeleteDone(ctx, evs); err != nil {
			return moved, err
		}
		if err := a.q.DoneWaiting(ctx, evs); err != nil {
			return moved, err
		}
	}
	return moved, a.q.WaitForFanout(ctx, waiting, a.now())
}

// waiting looks again at the events of shard n whose deliveries all moved
// before their fan-out was marked done.
func (a *Archiver) waiting(ctx context.Context, store *history.Store, n int) (full bool, err error) {
	ids, err := a.q.WaitingEvents(ctx, n, a.now().Add(-fanoutGrace), waitingPerPass)
	if err != nil || len(ids) == 0 {
		return false, err
	}
	return len(ids) >= waitingPerPass, a.moveWaiting(ctx, store, ids)
}

// moveWaiting moves the events of ids that are done.
func (a *Archiver) moveWaiting(ctx context.Context, store *history.Store, ids []string) error {
	byEvent := make(map[string][]string, len(ids))
	for _, id := range ids {
		byEvent[id] = nil
	}
	states, err := a.events.MarkEnded(ctx, byEvent)
	if err != nil {
		return err
	}
	var b history.Batch
	var done, finished []string
	for id, st := range states {
		switch {
		case st.Event == nil: // expired, or moved by another pass
			finished = append(finished, id)
		case st.Done:
			b.Events = append(b.Events, toHistoryEvent(st.Event))
			done = append(done, id)
		case st.Event.FanoutDone: // a live delivery is left: its end moves the event
			finished = append(finished, id)
		}
	}
	if len(b.Events) > 0 {
		res, err := store.Archive(ctx, b)
		if err != nil {
			return err
		}
		held := map[string]bool{}
		for _, id := range res.Events {
			held[id] = true
		}
		for _, qr := range res.Quarantined {
			held[qr.ID] = true
		}
		var del []string
		for _, id := range done {
			if held[id] {
				del = append(del, id)
			}
		}
		if _, err := a.events.DeleteDone(ctx, del); err != nil {
			return err
		}
		finished = append(finished, del...)
	}
	return a.q.DoneWaiting(ctx, finished)
}

// ObserveBacklog registers the backlog gauges, read at each collection:
//
//	webhook.archive.backlog {delivery}  due for history, still in Redis
//	webhook.archive.backlog_age s      how long the oldest has waited
func ObserveBacklog(m metric.Meter, now func() time.Time, q *redisqueue.Queue) error {
	size, err := m.Int64ObservableGauge("webhook.archive.backlog", metric.WithUnit("{delivery}"),
		metric.WithDescription("Ended (or long-parked) deliveries waiting in Redis to move to history"))
	if err != nil {
		return err
	}
	age, err := m.Float64ObservableGauge("webhook.archive.backlog_age", metric.WithUnit("s"),
		metric.WithDescription("How long the oldest delivery of the archive backlog has waited"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		t := now()
		n, oldest, err := q.BacklogStats(ctx, t)
		if err != nil {
			return err
		}
		o.ObserveInt64(size, n)
		l := 0.0
		if !oldest.IsZero() && oldest.Before(t) {
			l = t.Sub(oldest).Seconds()
		}
		o.ObserveFloat64(age, l)
		return nil
	}, size, age)
	return err
}
