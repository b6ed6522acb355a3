package archive

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

// Tiers is delivery.History over Redis (live) and PostgreSQL (history) as
// one, following pkg/history's merged-read contract. With no history store
// (Store nil) it is Redis alone.
type Tiers struct {
	Q      *redisqueue.Queue
	Events *eventstore.Store // payloads of restored deliveries
	Store  *history.Lazy     // nil: Redis only
}

var (
	_ delivery.History        = (*Tiers)(nil)
	_ delivery.ArchivedEvents = (*Tiers)(nil)
)

// ArchivedPayload is the payload of an event history holds, byte for byte
// (a delivery revived while the archiver moved its event reads it here).
// Without a history store it is NotFound.
func (t *Tiers) ArchivedPayload(ctx context.Context, accountID, eventID string) ([]byte, error) {
	s, err := t.store()
	if s == nil {
		if err == nil {
			err = apierr.NotFound("event", eventID)
		}
		return nil, err
	}
	e, err := s.GetEvent(ctx, accountID, eventID)
	if err != nil {
		return nil, err
	}
	return e.Payload, nil
}

func (t *Tiers) store() (*history.Store, error) {
	if t.Store == nil {
		return nil, nil
	}
	return t.Store.Store()
}

// Get reads Redis first (a live copy is the newest), then history, then
// Redis once more (a record restored from history between the two reads).
func (t *Tiers) Get(ctx context.Context, accountID, id string) (*delivery.Delivery, []delivery.Attempt, error) {
	d, atts, err := t.Q.Get(ctx, id)
	if !errors.Is(err, apierr.ErrNotFound) {
		return d, atts, err
	}
	s, serr := t.store()
	if s == nil {
		if serr != nil {
			return nil, nil, serr
		}
		return nil, nil, err
	}
	h, hatts, herr := s.GetDelivery(ctx, accountID, id)
	if errors.Is(herr, apierr.ErrNotFound) {
		return t.Q.Get(ctx, id)
	}
	if herr != nil {
		return nil, nil, herr
	}
	dd := FromHistory(h)
	return &dd, FromHistoryAttempts(hatts), nil
}

// maxEventPages bounds the history pages one EventID-filtered listing reads
// (history filters by event through its time window).
const maxEventPages = 20

// List merges both tiers: each asked for PageSize deliveries before the
// same id, merged by id descending, one copy per id (the higher version).
// It answers Unavailable when history cannot be read: a list that silently
// left history out would be wrong.
func (t *Tiers) List(ctx context.Context, accountID string, q delivery.ListQuery) ([]delivery.Delivery, string, error) {
	s, err := t.store()
	if err != nil {
		return nil, "", err
	}
	if q.PageToken != "" && !ids.Valid(ids.Delivery, q.PageToken) {
		return nil, "", apierr.Invalid("page_token", "is not a token returned by ListDeliveries")
	}
	sc, err := t.Q.ScanAccount(ctx, accountID, q.PageToken, q.Start, q.End, q.PageSize, q.Match)
	if err != nil {
		return nil, "", err
	}
	merged := map[string]delivery.Delivery{}
	for _, d := range sc.Matches {
		merged[d.ID] = d
	}
	if s != nil {
		hs, err := t.historyPage(ctx, s, accountID, q)
		if err != nil {
			return nil, "", err
		}
		for i := range hs {
			h := &hs[i]
			if v, ok := sc.Seen[h.ID]; ok && v >= h.Version {
				continue // Redis holds a newer copy (matching the filter or not)
			}
			if sc.Floor != "" && h.ID < sc.Floor {
				continue // below what Redis was read to: the next page
			}
			if cur, ok := merged[h.ID]; !ok || cur.Version < h.Version {
				merged[h.ID] = FromHistory(h)
			}
		}
	}
	out := make([]delivery.Delivery, 0, len(merged))
	for _, d := range merged {
		d.Body = nil
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	next := sc.Floor
	if len(out) >= q.PageSize {
		out = out[:q.PageSize]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// historyPage asks history for PageSize deliveries before the cursor.
func (t *Tiers) historyPage(ctx context.Context, s *history.Store, accountID string, q delivery.ListQuery) ([]history.Delivery, error) {
	hq := history.DeliveryQuery{
		EndpointID: q.EndpointID, EventType: q.EventType, Since: q.Start, Until: q.End,
		PageSize: q.PageSize, After: history.CursorAt(q.PageToken),
	}
	if q.Status != "" {
		hq.Statuses = []history.Status{history.Status(q.Status)}
	}
	if q.EventID == "" {
		ds, _, err := s.ListDeliveries(ctx, accountID, hq)
		return ds, err
	}
	// An event's deliveries share its time: narrow to that millisecond
	// and keep the event's.
	et, ok := ids.Time(q.EventID)
	if !ok {
		return nil, nil
	}
	if hq.Since.Before(et) {
		hq.Since = et
	}
	if u := et.Add(time.Millisecond); hq.Until.IsZero() || u.Before(hq.Until) {
		hq.Until = u
	}
	var out []history.Delivery
	for page := 0; page < maxEventPages && len(out) < q.PageSize; page++ {
		ds, next, err := s.ListDeliveries(ctx, accountID, hq)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if d.EventID == q.EventID {
				out = append(out, d)
			}
		}
		if next == "" {
			break
		}
		hq.After = next
	}
	return out, nil
}

// Requeue makes a delivery due now; one history holds is brought back to
// Redis first (its version continued, its attempts with it). The retry's
// audit entry is written by whichever script makes the delivery due
// (Queue.RequeueAudited or the restore), in the same step.
func (t *Tiers) Requeue(ctx context.Context, accountID, id string, now time.Time, ent auditlog.Entry) (bool, error) {
	ok, err := t.Q.RequeueAudited(ctx, id, now, &ent)
	if !errors.Is(err, apierr.ErrNotFound) {
		return ok, err
	}
	restored, err := t.restore(ctx, accountID, []string{id}, now, false, map[string]auditlog.Entry{id: ent})
	if err != nil || restored == 1 {
		return restored == 1, err
	}
	return t.Q.RequeueAudited(ctx, id, now, &ent) // restored by another call meanwhile
}

// RecordAudit writes an audit entry on its own (Queue.WriteAudit).
func (t *Tiers) RecordAudit(ctx context.Context, e auditlog.Entry) error {
	return t.Q.WriteAudit(ctx, e)
}

// Restart restarts deliveries of either tier with a fresh round; those in
// history are brought back to Redis.
func (t *Tiers) Restart(ctx context.Context, accountID string, idList []string, from []delivery.Status, now time.Time) (int, error) {
	res, err := t.Q.RestartEach(ctx, idList, from, now)
	total := 0
	var missing []string
	for i, r := range res {
		switch r {
		case 1:
			total++
		case -1:
			missing = append(missing, idList[i])
		}
	}
	if err != nil || len(missing) == 0 {
		return total, err
	}
	s, err := t.store()
	if s == nil {
		return total, err
	}
	// Only those whose history status is one of from, never a test.
	want := map[delivery.Status]bool{}
	for _, st := range from {
		want[st] = true
	}
	var keep []string
	for _, id := range missing {
		h, _, err := s.GetDelivery(ctx, accountID, id)
		if errors.Is(err, apierr.ErrNotFound) {
			continue
		}
		if err != nil {
			return total, err
		}
		if want[delivery.Status(h.Status)] && !h.Test {
			keep = append(keep, id)
		}
	}
	n, err := t.restore(ctx, accountID, keep, now, true, nil)
	return total + n, err
}

// restore brings deliveries from history back to Redis as pending, due
// now; fresh starts a new round of the schedule (resume, replay). A
// delivery whose event left Redis carries the event's payload, read from
// history byte for byte. ents are audit entries written with the restore
// of the delivery each names (Queue.RestoreAudited).
func (t *Tiers) restore(ctx context.Context, accountID string, idList []string, now time.Time, fresh bool, ents map[string]auditlog.Entry) (int, error) {
	if len(idList) == 0 {
		return 0, nil
	}
	s, err := t.store()
	if s == nil {
		if err == nil {
			err = apierr.NotFound("delivery", idList[0])
		}
		return 0, err
	}
	// Read and restored with their rows locked: a newer copy archived in
	// between (after a concurrent retry sent it and it ended) would
	// otherwise be superseded in Redis by the old one read here.
	n := 0
	err = s.HoldDeliveries(ctx, idList, func(held history.Held) error {
		var ds []delivery.Delivery
		var atts [][]delivery.Attempt
		for _, id := range idList {
			h, hatts, err := held.GetDelivery(ctx, accountID, id)
			if errors.Is(err, apierr.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			d := FromHistory(h)
			if h.Test {
				continue // Send Test deliveries are never sent again
			}
			if fresh {
				d.Base, d.FirstAttempt = d.Attempts, time.Time{}
			}
			ds = append(ds, d)
			atts = append(atts, FromHistoryAttempts(hatts))
		}
		if len(ds) == 0 {
			if len(idList) == 1 {
				return apierr.NotFound("delivery", idList[0])
			}
			return nil
		}
		if err := t.carryPayloads(ctx, held, accountID, ds); err != nil {
			return err
		}
		ok, err := t.Q.RestoreAudited(ctx, ds, atts, now, ents)
		for _, r := range ok {
			if r {
				n++
			}
		}
		return err
	})
	return n, err
}

// carryPayloads gives each delivery whose event is no longer in Redis its
// event's payload from history.
func (t *Tiers) carryPayloads(ctx context.Context, s history.Held, accountID string, ds []delivery.Delivery) error {
	evIDs := make([]string, len(ds))
	for i := range ds {
		evIDs[i] = ds[i].EventID
	}
	accts, _, err := t.Events.Accounts(ctx, evIDs, false)
	if err != nil {
		return err
	}
	var missing []string
	for i, a := range accts {
		if a == "" {
			missing = append(missing, evIDs[i])
		}
	}
	if len(missing) == 0 {
		return nil
	}
	evs, err := s.GetEvents(ctx, accountID, missing)
	if err != nil {
		return err
	}
	payload := map[string][]byte{}
	for _, e := range evs {
		payload[e.ID] = e.Payload
	}
	for i := range ds {
		if accts[i] == "" {
			ds[i].Body = payload[ds[i].EventID]
		}
	}
	return nil
}

// RecordTest stores a finished test delivery (in Redis; the archiver moves it).
func (t *Tiers) RecordTest(ctx context.Context, d delivery.Delivery, a delivery.Attempt) error {
	return t.Q.RecordTest(ctx, d, a)
}

// Parked returns Redis's parked deliveries grouped by endpoint, and the
// endpoints with parked work in history.
func (t *Tiers) Parked(ctx context.Context, limit int) ([]delivery.ParkedEndpoint, error) {
	out, err := t.Q.Parked(ctx, limit)
	if err != nil || t.Store == nil {
		return out, err
	}
	ms, err := t.Q.ParkedInHistory(ctx)
	if err != nil {
		return out, err
	}
	for _, m := range ms {
		acct, ep, _ := strings.Cut(m, "|")
		// First, so that work parked longest (moved to history) goes first.
		out = append([]delivery.ParkedEndpoint{{AccountID: acct, EndpointID: ep, InHistory: true}}, out...)
	}
	return out, nil
}

// resumePage is how many parked deliveries one page of a resume brings back.
const resumePage = 500

// ResumeHistory brings an endpoint's parked work back from history page by
// page in publish order (history.Store.ResumeParked: each page's rows stay
// locked from its read until what was restored is unparked, so no newer
// copy archived meanwhile is overwritten by an old one). Each page is
// restored to Redis (fresh round, version continued, payload carried when
// the event left Redis), create-only: a delivery Redis still holds is
// neither restored nor unparked (the archiver may have committed it and
// not yet deleted it, at the same version, which its delete then finds;
// unparking it would leave it in neither tier), and its row stays in
// history until the live copy moves again, newer. A crash in between
// restores the same page again, which the create-only restore makes
// harmless. Each page is due 1 ms after the previous one, so the schedule
// hands it out in publish order too.
//
// The endpoint's ordered lines closed by parked work in history are
// closed for the resume first (Queue.CloseLines): each restored ordered
// delivery rejoins its line at its sequence number and waits, and once
// every page is back the lines open (Queue.OpenLines), each releasing its
// head, so a key's work goes in the order it was published, history's
// and Redis's alike. A crash in between leaves the lines closed and the
// endpoint listed, and the next sweep resumes it again.
//
// Once done it forgets the endpoint, then looks once more: parked work
// the archiver committed while the pages were read (its delete came
// later) files the endpoint again, for the next sweep.
func (t *Tiers) ResumeHistory(ctx context.Context, accountID, endpointID string, now time.Time) (int, error) {
	s, err := t.store()
	if s == nil {
		return 0, err
	}
	if err := t.Q.CloseLines(ctx, endpointID); err != nil {
		return 0, err
	}
	total := 0
	due := now
	var cur history.Cursor
	for {
		next, taken, err := s.ResumeParked(ctx, endpointID, cur, resumePage, func(ps []history.Parked) ([]history.Ref, error) {
			ds := make([]delivery.Delivery, len(ps))
			atts := make([][]delivery.Attempt, len(ps))
			for i := range ps {
				d := FromHistory(&ps[i].Delivery)
				d.Base, d.FirstAttempt = d.Attempts, time.Time{}
				ds[i] = d
				if ps[i].Event != nil { // else the event is live in Redis and read there at send time
					ds[i].Body = ps[i].Event.Payload
				}
			}
			restored, err := t.Q.Restore(ctx, ds, atts, due)
			var moved []history.Ref
			for i, r := range restored {
				if r {
					moved = append(moved, history.Ref{ID: ds[i].ID, Version: ds[i].Version})
				}
			}
			total += len(moved)
			return moved, err
		})
		if err != nil {
			return total, err
		}
		if taken == 0 {
			break
		}
		cur = next
		due = due.Add(time.Millisecond)
	}
	if _, err := t.Q.OpenLines(ctx, endpointID, now); err != nil {
		return total, err
	}
	member := accountID + "|" + endpointID
	if err := t.Q.ForgetParkedInHistory(ctx, member); err != nil {
		return total, err
	}
	if left, _, err := s.TakeParked(ctx, endpointID, "", 1); err != nil || len(left) > 0 {
		return total, errors.Join(err, t.Q.NoteParkedInHistory(ctx, []string{member}))
	}
	return total, nil
}

// Find returns the ids of both tiers, oldest first, at most limit.
func (t *Tiers) Find(ctx context.Context, accountID, endpointID string, statuses []delivery.Status, since time.Time, limit int) ([]string, error) {
	live, err := t.Q.Find(ctx, accountID, endpointID, statuses, since, limit)
	if err != nil {
		return nil, err
	}
	s, err := t.store()
	if err != nil {
		return nil, err
	}
	if s == nil {
		return live, nil
	}
	hst := make([]history.Status, len(statuses))
	for i, st := range statuses {
		hst[i] = history.Status(st)
	}
	hs, err := s.FindForReplay(ctx, accountID, endpointID, hst, since, limit)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	out := append([]string(nil), live...)
	for _, id := range live {
		seen[id] = true
	}
	for _, h := range hs {
		if !seen[h.ID] {
			if _, _, err := t.Q.Get(ctx, h.ID); errors.Is(err, apierr.ErrNotFound) { // a live copy decides for itself
				out = append(out, h.ID)
			}
			seen[h.ID] = true
		}
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
