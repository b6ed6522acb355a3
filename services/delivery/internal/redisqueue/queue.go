// Package redisqueue keeps the delivery schedule and log in Redis, with the
// key layout of docs/architecture.md:
//
//	wh:sched:{s<n>}            zset  schedule shard n: delivery id → due (or lease-until) ms
//	wh:dlv:{s<n>}:<id>         hash  delivery state and trace context
//	wh:dlv:{s<n>}:<id>:att     list  attempt log (JSON, last 50)
//	wh:parked:{s<n>}           set   "<endpoint>|<delivery>" parked while the endpoint is off
//	wh:ended:{s<n>}            zset  deliveries of shard n to move to history → when (ms):
//	                                 the end for succeeded, failed, canceled;
//	                                 parked + ParkedMoveAfter for parked
//	wh:{a:<acct>}:dlv          zset  the account's delivery ids by create time (ms)
//	wh:audit:{s<n>}            set   accounts with audit entries in shard n (pkg/auditlog)
//	wh:audit:{s<n>}:<acct>     hash  audit entries of manual retries (written by the script
//	                                 that makes the delivery due) and replays, until the
//	                                 registry's mover moves them to history
//
// n = fnv32a(delivery id) % Shards (pkg/shard). Each Lua script touches one shard's
// keys only, so the layout works on Redis Cluster.
package redisqueue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/autobatch"
	"github.com/voxscriber/webhooks/pkg/config"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/shard"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// Shards is the number of schedule shards (pkg/shard's Count, the one
// definition the registry's audit mover shares). It is fixed in the code,
// not read from the environment: a delivery's keys live in the shard its
// id hashes to, so changing it strands existing deliveries.
const Shards = shard.Count

// WakeChannel is where Schedule announces due work to every delivery
// process.
const WakeChannel = "wh:sched:wake"

// KeepAttempts is how many attempts a delivery's log keeps.
const KeepAttempts = 50

// Queue implements delivery.Queue; archive.Tiers makes it and history one
// delivery.History.
type Queue struct {
	rdb       redis.UniversalClient
	batch     *batcher // Complete: one pipeline for many attempts
	successes *autobatch.Batcher[successMark, struct{}]
	cluster   bool // a Redis Cluster: a pipeline has no order across nodes
	retention time.Duration
	// parkedMoveAfter is how long a parked delivery stays in Redis before
	// the archiver moves it to history.
	parkedMoveAfter time.Duration
	next            atomic.Uint32 // rotates the first shard claimed
	// wakers are the Listen callbacks: a Complete that released the next
	// delivery of an ordered line calls them, so this process claims it
	// at once instead of at its next poll.
	wakers sync.Map // *func() → struct{}
}

// DefaultParkedMoveAfter is PARKED_MOVE_AFTER's default.
const DefaultParkedMoveAfter = 5 * time.Minute

// parkedMoveAt is when parked work filed at t (ms) is due to move to
// history: PARKED_MOVE_AFTER later.
func (q *Queue) parkedMoveAt(t int64) int64 { return t + q.parkedMoveAfter.Milliseconds() }

// SetParkedMoveAfter sets how long a parked delivery stays in Redis before
// it moves to history (DefaultParkedMoveAfter when never set).
func (q *Queue) SetParkedMoveAfter(d time.Duration) {
	if d > 0 {
		q.parkedMoveAfter = d
	}
}

var _ delivery.Queue = (*Queue)(nil)

// New returns a Queue. retention (DELIVERY_RETENTION;
// config.DefaultDeliveryRetention when 0) bounds what is disposable: the
// account indexes' entries (trimmed by score), endpoint stats, pending
// disables and operational events. Delivery records never expire: a live
// one ends by its schedule, an ended or parked one leaves Redis only when
// the archiver has moved it to history.
func New(rdb redis.UniversalClient, retention time.Duration) *Queue {
	if retention <= 0 {
		retention = config.DefaultDeliveryRetention
	}
	_, cluster := rdb.(*redis.ClusterClient)
	return &Queue{rdb: rdb, batch: newBatcher(rdb), successes: newSuccessBatcher(rdb, retention),
		cluster: cluster, retention: retention, parkedMoveAfter: DefaultParkedMoveAfter}
}

// Shard is the schedule shard of a delivery id.
func Shard(id string) int { return shard.Of(id) }

// shardChunk is positions of the caller's list whose ids share a shard, in
// the list's order: one script call's worth.
type shardChunk struct {
	shard int
	idx   []int
}

// chunkByShard groups the positions 0..n-1 by the shard of id(i), at most
// size to a chunk (0: no bound); chunks come in the order of their first
// position.
func chunkByShard(n int, id func(i int) string, size int) []*shardChunk {
	var chunks []*shardChunk
	open := map[int]*shardChunk{}
	for i := range n {
		s := Shard(id(i))
		c := open[s]
		if c == nil || (size > 0 && len(c.idx) == size) {
			c = &shardChunk{shard: s}
			open[s] = c
			chunks = append(chunks, c)
		}
		c.idx = append(c.idx, i)
	}
	return chunks
}

// Key names.
func schedKey(n int) string         { return "wh:sched:{s" + strconv.Itoa(n) + "}" }
func dlvPrefix(n int) string        { return "wh:dlv:{s" + strconv.Itoa(n) + "}:" }
func parkedKey(n int) string        { return "wh:parked:{s" + strconv.Itoa(n) + "}" }
func endedKey(n int) string         { return "wh:ended:{s" + strconv.Itoa(n) + "}" }
func accountKey(acct string) string { return "wh:{a:" + acct + "}:dlv" }
func waitingKey(n int) string       { return "wh:waiting:{s" + strconv.Itoa(n) + "}" }
func linePrefix(n int) string       { return lineRoot + "{s" + strconv.Itoa(n) + "}:" }

// closedLinesPrefix + endpoint id is the hash of the ordering keys whose
// line in shard n is closed (some of its parked work is in history) →
// 'c:<mark>' or 'r:<mark>' (orderedLua).
func closedLinesPrefix(n int) string { return closedLinesRoot + "{s" + strconv.Itoa(n) + "}:" }

// The roots of the line and closed-lines keys; orderedLua derives a
// shard's closed-lines prefix from its line prefix by swapping them.
const (
	lineRoot        = "wh:line:"
	closedLinesRoot = "wh:histlines:"
)

// lineKey is the line of an ordered delivery (scripts.go, orderedLua).
func lineKey(d *delivery.Delivery) string {
	return linePrefix(Shard(d.ID)) + d.EndpointID + "|" + d.OrderingKey
}

// DeliveryKey is the hash of a delivery.
func DeliveryKey(id string) string { return dlvPrefix(Shard(id)) + id }

// AttemptsKey is the attempt list of a delivery.
func AttemptsKey(id string) string { return DeliveryKey(id) + ":att" }

// ScheduleKey is the schedule shard holding a delivery.
func ScheduleKey(id string) string { return schedKey(Shard(id)) }

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(s string) time.Time {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func boolField(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Load loads the scripts into the script cache (also done on demand).
func (q *Queue) Load(ctx context.Context) error {
	for _, s := range allScripts {
		if err := s.Load(ctx, q.rdb).Err(); err != nil {
			return err
		}
	}
	return nil
}

// scheduleChunk bounds the deliveries one schedule script call creates
// (Lua's unpack has a stack limit).
const scheduleChunk = 200

// Schedule creates the deliveries that do not exist yet, one script call
// per shard (per scheduleChunk of it), adds them to their accounts' indexes
// and wakes the delivery workers, all in one pipeline.
func (q *Queue) Schedule(ctx context.Context, ds []delivery.Delivery) ([]bool, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	chunks := chunkByShard(len(ds), func(i int) string { return ds[i].ID }, scheduleChunk)
	byAccount := map[string][]redis.Z{}
	var now int64 // the latest create time: when a delivery that waits began waiting
	wake := false // a delivery no caller leased: the claimers find it
	for i := range ds {
		d := &ds[i]
		byAccount[d.AccountID] = append(byAccount[d.AccountID], redis.Z{Score: idScore(d.ID, d.CreateTime), Member: d.ID})
		now = max(now, ms(d.CreateTime))
		wake = wake || d.LeaseUntil.IsZero()
	}
	calls := make([]redisx.ScriptCall, len(chunks))
	for j, c := range chunks {
		args := []any{dlvPrefix(c.shard), linePrefix(c.shard), now, q.parkedMoveAt(now)}
		for _, i := range c.idx {
			f := hashFields(&ds[i])
			score := ms(ds[i].NextTime)
			if !ds[i].LeaseUntil.IsZero() { // created leased: scored at its lease's end, as a claim scores it
				score = ms(ds[i].LeaseUntil)
			}
			args = append(args, ds[i].ID, score, len(f))
			args = append(args, f...)
		}
		calls[j] = redisx.ScriptCall{Script: scheduleScript, Keys: []string{schedKey(c.shard), waitingKey(c.shard), endedKey(c.shard)}, Args: args}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, func(p redis.Pipeliner) {
		for acct, zs := range byAccount {
			k := accountKey(acct)
			p.ZAddNX(ctx, k, zs...)
			p.ZRemRangeByScore(ctx, k, "-inf", "("+strconv.FormatInt(now-q.retention.Milliseconds(), 10))
			p.PExpire(ctx, k, q.retention)
		}
		// Wake every delivery process in the same round trip, after the
		// writes so that a woken claimer finds them (a spurious wake, when
		// every delivery already existed, is harmless). A cluster pipeline
		// runs on several nodes at once, with no order between them: there
		// the wake follows the reply.
		if !q.cluster && wake {
			p.Publish(ctx, WakeChannel, "1")
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if q.cluster && wake {
		// Best effort: other processes poll at least every second anyway.
		_ = q.rdb.Publish(ctx, WakeChannel, "1").Err()
	}
	created := make([]bool, len(ds))
	for j, c := range chunks {
		res, _ := replies[j].([]any)
		if len(res) != len(c.idx) {
			return nil, fmt.Errorf("schedule shard %d: %d replies for %d deliveries", c.shard, len(res), len(c.idx))
		}
		for k, i := range c.idx {
			created[i] = res[k] == int64(1)
		}
	}
	return created, nil
}

// Exist reports which of the deliveries ids are in Redis, in one pipeline.
func (q *Queue) Exist(ctx context.Context, ids []string) ([]bool, error) {
	cmds := make([]*redis.IntCmd, len(ids))
	if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Exists(ctx, dlvPrefix(Shard(id))+id)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]bool, len(ids))
	for i, c := range cmds {
		out[i] = c.Val() == 1
	}
	return out, nil
}

func hashFields(d *delivery.Delivery) []any {
	f := []any{
		"event", d.EventID, "endpoint", d.EndpointID, "account", d.AccountID, "type", d.EventType,
		"status", string(d.Status), "attempts", d.Attempts, "created", ms(d.CreateTime),
		"updated", ms(d.UpdateTime), "next", ms(d.NextTime), "tp", d.TraceParent, "ts", d.TraceState,
		"code", d.LastCode, "err", d.LastError, "test", boolField(d.Test), "lease", ms(d.LeaseUntil),
		"ver", d.Version + 1, // a write: one more than the version it starts from
	}
	if len(d.Body) > 0 {
		f = append(f, "body", d.Body)
	}
	if d.OrderingKey != "" {
		f = append(f, "okey", d.OrderingKey)
	}
	return f
}

func parseHash(id string, m map[string]string) *delivery.Delivery {
	attempts, _ := strconv.Atoi(m["attempts"])
	base, _ := strconv.Atoi(m["base"])
	code, _ := strconv.Atoi(m["code"])
	ver, _ := strconv.ParseInt(m["ver"], 10, 64)
	d := &delivery.Delivery{
		Version: ver,
		ID:      id, EventID: m["event"], EndpointID: m["endpoint"], AccountID: m["account"],
		EventType: m["type"], Status: delivery.Status(m["status"]), Attempts: attempts, Base: base,
		FirstAttempt: fromMS(m["first"]),
		CreateTime:   fromMS(m["created"]), UpdateTime: fromMS(m["updated"]),
		TraceParent: m["tp"], TraceState: m["ts"], LastCode: code, LastError: m["err"],
		Test: m["test"] == "1", OrderingKey: m["okey"],
	}
	if w, _ := strconv.ParseInt(m["waited"], 10, 64); w > 0 {
		d.Waited = time.Duration(w) * time.Millisecond
	}
	if d.Status == delivery.StatusPending {
		d.NextTime = fromMS(m["next"])
	}
	if b := m["body"]; b != "" {
		d.Body = []byte(b)
	}
	return d
}

// Claim leases up to max due deliveries in two round trips whatever the
// number of shards: one pipeline counts the due items of every shard (and
// reads each shard's earliest score), the next runs the claim script on
// the shards that have due items only, sharing max among them from a
// rotating start. next is when to look again: now when more may be due,
// else the earliest score left (a due time or a lease's end), zero when
// the schedule is empty.
func (q *Queue) Claim(ctx context.Context, now, leaseUntil time.Time, max int) ([]delivery.Job, time.Time, error) {
	nowMS, leaseMS := now.UnixMilli(), leaseUntil.UnixMilli()
	nowS := strconv.FormatInt(nowMS, 10)
	counts := make([]*redis.IntCmd, Shards)
	firsts := make([]*redis.ZSliceCmd, Shards)
	if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n := range Shards {
			counts[n] = p.ZCount(ctx, schedKey(n), "-inf", nowS)
			firsts[n] = p.ZRangeWithScores(ctx, schedKey(n), 0, 0)
		}
		return nil
	}); err != nil {
		return nil, time.Time{}, fmt.Errorf("reading the schedule: %w", err)
	}
	earliest := int64(-1)
	note := func(score int64) {
		if earliest < 0 || score < earliest {
			earliest = score
		}
	}
	take := make([]int, Shards)
	left := max
	start := int(q.next.Add(1) % Shards)
	for i := range Shards {
		n := (start + i) % Shards
		due := int(counts[n].Val())
		if due > 0 && left > 0 {
			take[n] = min(due, left)
			left -= take[n]
			continue // its earliest score comes with the claim
		}
		if due > 0 {
			note(nowMS) // more is due than this claim takes
		} else if z := firsts[n].Val(); len(z) > 0 {
			note(int64(z[0].Score))
		}
	}
	var jobs []delivery.Job
	if left < max {
		var err error
		jobs, err = q.claimShards(ctx, take, nowMS, leaseMS, note)
		if err != nil {
			return jobs, time.Time{}, err
		}
	}
	switch {
	case earliest < 0:
		return jobs, time.Time{}, nil
	case earliest <= nowMS:
		return jobs, now, nil
	}
	return jobs, time.UnixMilli(earliest), nil
}

// claimShards runs the claim script on every shard n with take[n] > 0, in
// one pipeline, and reports each shard's earliest remaining score to note.
func (q *Queue) claimShards(ctx context.Context, take []int, nowMS, leaseMS int64, note func(int64)) ([]delivery.Job, error) {
	var calls []redisx.ScriptCall
	var shards []int
	for n, k := range take {
		if k > 0 {
			calls = append(calls, redisx.ScriptCall{Script: claimScript, Keys: []string{schedKey(n)}, Args: []any{nowMS, leaseMS, k, dlvPrefix(n)}})
			shards = append(shards, n)
		}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	// Jobs claimed on the shards that answered are returned even when
	// another failed: they are leased, and run now rather than when the
	// lease ends.
	var jobs []delivery.Job
	var firstErr error
	for j, n := range shards {
		res, _ := replies[j].([]any)
		if errs[j] == nil && len(res) != 2 {
			errs[j] = fmt.Errorf("unexpected reply %v", replies[j])
		}
		if errs[j] != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("claim shard %d: %w", n, errs[j])
			}
			continue
		}
		items, _ := res[0].([]any)
		for j := 0; j+1 < len(items); j += 2 {
			id, _ := items[j].(string)
			fields, _ := items[j+1].([]any)
			jobs = append(jobs, delivery.Job{Delivery: *parseHash(id, fieldMap(fields)), LeaseUntil: time.UnixMilli(leaseMS)})
		}
		if s, _ := res[1].(string); s != "" {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				note(int64(f))
			}
		}
	}
	return jobs, firstErr
}

// fieldMap is a script's HGETALL reply as a map.
func fieldMap(fields []any) map[string]string {
	m := make(map[string]string, len(fields)/2)
	for k := 0; k+1 < len(fields); k += 2 {
		ks, _ := fields[k].(string)
		vs, _ := fields[k+1].(string)
		m[ks] = vs
	}
	return m
}

// Complete records an outcome if the lease is still held. With
// o.HandoffUntil set, the next delivery of an ordered line that the end
// releases is leased to the caller until then and returned. With
// o.MarkEndpoint the endpoint's success is marked first: in the same
// script on a standalone Redis, by MarkSuccess before it on a cluster.
func (q *Queue) Complete(ctx context.Context, job delivery.Job, o delivery.Outcome) (bool, *delivery.Job, error) {
	d := &job.Delivery
	n := Shard(d.ID)
	hk := dlvPrefix(n) + d.ID
	var attempts, code, errMsg, attJSON, start string
	errMsg = o.LastError
	if a := o.Attempt; a != nil {
		kept := *a // the headers history keeps, so that the attempt reads the same in both tiers
		kept.RequestHeaders = history.KeptHeaders(a.RequestHeaders, d.EventType, d.ID, d.EventID)
		b := encodeAttempt(&kept)
		attJSON, attempts, code, errMsg = string(b), strconv.Itoa(a.Number), strconv.Itoa(a.StatusCode), a.Error
		start = strconv.FormatInt(max(ms(a.Start), 1), 10)
	}
	var moveAt int64 // when the archiver takes it (0: it stays live)
	switch o.Status {
	case delivery.StatusSucceeded, delivery.StatusFailed, delivery.StatusCanceled:
		moveAt = max(ms(o.Now), 1)
	case delivery.StatusParked:
		moveAt = q.parkedMoveAt(max(ms(o.Now), 1))
	}
	keys := []string{schedKey(n), hk, hk + ":att", parkedKey(n), endedKey(n), waitingKey(n)}
	var markAt int64 // the endpoint's success, marked by the script (0: none)
	if o.MarkEndpoint {
		if q.cluster { // the endpoint's stats are in another slot: marked first, on their own
			if err := q.MarkSuccess(ctx, d.EndpointID, o.Now); err != nil {
				return false, nil, err
			}
		} else {
			keys = append(keys, epStatKey(d.EndpointID))
			markAt = o.Now.UnixMilli()
		}
	}
	res, err := q.runScript(ctx, completeScript, keys,
		d.ID, job.LeaseUntil.UnixMilli(), string(o.Status), ms(o.Next), ms(o.Now),
		attempts, code, errMsg, attJSON, d.EndpointID+"|"+d.ID, KeepAttempts, start, moveAt,
		linePrefix(n), dlvPrefix(n), ms(o.HandoffUntil), markAt, q.retention.Milliseconds(),
	)
	if err != nil {
		return false, nil, err
	}
	if h, ok := res.([]any); ok && len(h) == 3 { // the next of its line, leased to the caller
		id, _ := h[1].(string)
		fields, _ := h[2].([]any)
		return true, &delivery.Job{Delivery: *parseHash(id, fieldMap(fields)), LeaseUntil: time.UnixMilli(ms(o.HandoffUntil))}, nil
	}
	recorded, _ := res.(int64)
	if recorded == 2 {
		q.wake()
	}
	return recorded >= 1, nil, nil
}

// wake calls the Listen callbacks of this process.
func (q *Queue) wake() {
	q.wakers.Range(func(k, _ any) bool {
		(*k.(*func()))()
		return true
	})
}

// Release hands a job back, due now, if the lease is still held.
func (q *Queue) Release(ctx context.Context, job delivery.Job, now time.Time) error {
	n := Shard(job.Delivery.ID)
	return releaseScript.Run(ctx, q.rdb, []string{schedKey(n), dlvPrefix(n) + job.Delivery.ID},
		job.Delivery.ID, job.LeaseUntil.UnixMilli(), now.UnixMilli()).Err()
}

// ReleaseAll hands jobs back in one pipeline, each due at due[i], where the
// lease is still held.
func (q *Queue) ReleaseAll(ctx context.Context, jobs []delivery.Job, due []time.Time) error {
	if len(jobs) == 0 {
		return nil
	}
	calls := make([]redisx.ScriptCall, len(jobs))
	for i, job := range jobs {
		n := Shard(job.Delivery.ID)
		calls[i] = redisx.ScriptCall{Script: releaseScript, Keys: []string{schedKey(n), dlvPrefix(n) + job.Delivery.ID},
			Args: []any{job.Delivery.ID, job.LeaseUntil.UnixMilli(), due[i].UnixMilli()}}
	}
	_, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	return errors.Join(errs...)
}

// Requeue makes a delivery pending and due now unless it is in flight.
func (q *Queue) Requeue(ctx context.Context, id string, now time.Time) (bool, error) {
	return q.RequeueAudited(ctx, id, now, nil)
}

// RequeueAudited is Requeue that also writes ent (a manual retry's audit
// entry) in the same script, only when it requeues: a refused retry (in
// flight, missing) writes none. ent nil writes none.
func (q *Queue) RequeueAudited(ctx context.Context, id string, now time.Time, ent *auditlog.Entry) (bool, error) {
	n := Shard(id)
	akeys, aargs := auditlog.NoShardWrite(n)
	if ent != nil {
		akeys, aargs = ent.ForShard(n)
	}
	keys := append([]string{schedKey(n), dlvPrefix(n) + id, parkedKey(n), endedKey(n)}, akeys...)
	keys = append(keys, waitingKey(n))
	args := append([]any{id, now.UnixMilli()}, aargs...)
	res, err := requeueScript.Run(ctx, q.rdb, keys, append(args, linePrefix(n), q.parkedMoveAt(ms(now)))...).Int()
	if err != nil {
		return false, err
	}
	if res < 0 {
		return false, apierr.NotFound("delivery", id)
	}
	return res == 1, nil
}

// WriteAudit writes an audit entry on its own, in the shard of the
// resource it names (a replay's, written before the replay starts: it
// touches deliveries of every shard, so no script can hold them all).
func (q *Queue) WriteAudit(ctx context.Context, e auditlog.Entry) error {
	return auditlog.WriteShard(ctx, q.rdb, Shard(e.Resource), e)
}

// Get returns a delivery and its attempts.
func (q *Queue) Get(ctx context.Context, id string) (*delivery.Delivery, []delivery.Attempt, error) {
	var h *redis.MapStringStringCmd
	var l *redis.StringSliceCmd
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		h = p.HGetAll(ctx, DeliveryKey(id))
		l = p.LRange(ctx, AttemptsKey(id), 0, -1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	m := h.Val()
	if len(m) == 0 || m["account"] == "" {
		return nil, nil, apierr.NotFound("delivery", id)
	}
	atts := make([]delivery.Attempt, 0, len(l.Val()))
	for _, s := range l.Val() {
		a, err := decodeAttempt(s)
		if err != nil {
			continue // a damaged entry does not hide the others
		}
		atts = append(atts, a)
	}
	d := parseHash(id, m)
	if w, _ := strconv.ParseInt(m["wait"], 10, 64); w > 0 && d.OrderingKey != "" {
		d.WaitingFor = q.lineHeadEvent(ctx, d)
	}
	return d, atts, nil
}

// lineHeadEvent is the event id of the delivery heading d's line (what a
// waiting d waits for), "" when it cannot tell.
func (q *Queue) lineHeadEvent(ctx context.Context, d *delivery.Delivery) string {
	head, err := q.rdb.ZRange(ctx, lineKey(d), 0, 0).Result()
	if err != nil || len(head) == 0 || head[0] == d.ID {
		return ""
	}
	ev, _ := q.rdb.HGet(ctx, DeliveryKey(head[0]), "event").Result()
	return ev
}

// RecordTest stores a finished test delivery with its one attempt, due for
// the archiver at once. Like every ended delivery it carries no TTL: it is
// a record the customer lists (and history keeps), so a PostgreSQL outage
// must not lose it; it waits in wh:ended until the archiver moves it.
func (q *Queue) RecordTest(ctx context.Context, d delivery.Delivery, a delivery.Attempt) error {
	b := encodeAttempt(&a)
	hk, ak := DeliveryKey(d.ID), AttemptsKey(d.ID)
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, hk, hashFields(&d)...)
		p.RPush(ctx, ak, b)
		p.ZAdd(ctx, endedKey(Shard(d.ID)), redis.Z{Score: float64(max(ms(d.UpdateTime), 1)), Member: d.ID}) // ended: to history
		p.ZAdd(ctx, accountKey(d.AccountID), redis.Z{Score: idScore(d.ID, d.CreateTime), Member: d.ID})
		p.ZRemRangeByScore(ctx, accountKey(d.AccountID), "-inf", "("+strconv.FormatInt(ms(d.CreateTime)-q.retention.Milliseconds(), 10))
		p.PExpire(ctx, accountKey(d.AccountID), q.retention)
		return nil
	})
	return err
}
