package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/services/delivery/internal/mailer"
)

// The failure rules (docs/architecture.md, "Delivery under failure"):
//
//   - 410 Gone: the delivery is parked and the endpoint disabled at once.
//   - An event's final scheduled attempt fails and the endpoint had no
//     success since that event's first attempt: the endpoint is disabled.
//
// Decisions are taken on recorded outcomes only: a success mark is written
// before the success itself is recorded (record), and afterAttempt runs
// only for an outcome the queue accepted (lease still held). A decision is
// durable: the same atomic step that takes it (EndpointStats.ClaimDisable)
// stores it as a pending disable, and the disabler loop (StartDisabler) of
// any delivery process carries it out, retrying with backoff until the
// registry confirms (DisableEndpointBySystem), then emails the account's
// notification address. The endpoint's other deliveries are parked when
// they come due (prepare sees the endpoint is not ACTIVE); enabling it
// again resumes them (Service.ResumeParked) with a fresh round of the
// retry schedule.

// PendingDisable is a decision to disable an endpoint, kept in the store
// until it has been carried out.
type PendingDisable struct {
	AccountID, EndpointID string
	URL                   string // for the notice
	Reason                string // told to the registry and in the notice
	LastError             string // of the attempt that decided it
	// DecidedAt is when it was decided; it identifies the decision.
	DecidedAt time.Time
	// Notify is set once the registry confirmed the disable: only the
	// notice is left to send.
	Notify bool
	// Tries counts the failed tries of the current step.
	Tries int
	// LeaseUntil is the lease of the claim that returned it.
	LeaseUntil time.Time
}

// EndpointStats remembers per endpoint when it last succeeded and when the
// system last decided to disable it, and keeps the pending disables.
// The successes are marked by Queue.Complete (Outcome.MarkEndpoint).
type EndpointStats interface {
	// ClaimDisable reports whether the endpoint p names is to be disabled:
	// it had no success at or after since (ignored when force) and the
	// system did not already decide to disable it since then. A true answer
	// records the decision (at p.DecidedAt) and p as a pending disable, due
	// now, in the same atomic step: concurrent failures disable (and email)
	// once, and the decision outlives the process that took it.
	ClaimDisable(ctx context.Context, p PendingDisable, since time.Time, force bool) (bool, error)
	// ClaimDisables leases up to max pending disables due at now until
	// leaseUntil: a process that dies holding one leaves it due again at
	// the lease's end.
	ClaimDisables(ctx context.Context, now, leaseUntil time.Time, max int) ([]PendingDisable, error)
	// SaveDisable stores p's progress (Notify, Tries, lastErr) and makes it
	// due at next (p.LeaseUntil keeps holding it), if its lease is still
	// held; it reports whether it was.
	SaveDisable(ctx context.Context, p PendingDisable, next time.Time, lastErr string) (bool, error)
	// FinishDisable removes p, done, if its lease is still held.
	FinishDisable(ctx context.Context, p PendingDisable) (bool, error)
}

// Registry is what failure handling needs of the registry.
type Registry interface {
	// DisableEndpoint marks the endpoint DISABLED with a reason; an
	// endpoint already DISABLED keeps its first reason (so a repeated call
	// is harmless).
	DisableEndpoint(ctx context.Context, accountID, endpointID, reason string) error
	// NotificationEmail is the account's notice address ("" when unset).
	NotificationEmail(ctx context.Context, accountID string) (string, error)
}

// The disabler loop's timing.
const (
	// DisablePoll is how often the loop looks for due pending disables
	// when nothing wakes it earlier.
	DisablePoll = time.Second
	// disableLease is how long a claimed pending disable is held: longer
	// than its registry calls (lookupTimeout each) and an SMTP
	// conversation (mailer.SMTP: 10 s) together.
	disableLease = 60 * time.Second
	// disableBackoff is the wait after the first failed try; it doubles up
	// to maxDisableBackoff.
	disableBackoff    = time.Second
	maxDisableBackoff = time.Minute
	// maxNoticeTries bounds the tries of the notice (about 10 minutes);
	// the registry step is retried until the pending disable expires
	// (DELIVERY_RETENTION).
	maxNoticeTries = 15
	// decideTries bounds the tries of one decision.
	decideTries = 3
)

// afterAttempt applies the failure rules to an attempt whose outcome was
// recorded (record said so): a decision to disable is taken on recorded
// outcomes only.
func (d *Dispatcher) afterAttempt(ctx context.Context, job Job, t *Target, o *Outcome) {
	st, a, dl := d.deps.Stats, o.Attempt, &job.Delivery
	if st == nil || a == nil || dl.Test || a.Succeeded() { // a success was marked before it was recorded
		return
	}
	p := PendingDisable{AccountID: dl.AccountID, EndpointID: dl.EndpointID, URL: t.URL, LastError: a.Error, DecidedAt: o.Now}
	switch {
	case a.StatusCode == http.StatusGone:
		p.Reason = "the endpoint answered 410 Gone"
		d.decideDisable(ctx, p, a.Start, true)
	case o.Status == StatusFailed && a.Number-dl.Base >= d.cfg.Retry.MaxAttempts():
		d.exhausted(ctx, dl, a)
		first := dl.FirstAttempt
		if a.Number-dl.Base == 1 {
			first = a.Start
		} else if first.IsZero() {
			first = dl.CreateTime
		}
		p.Reason = fmt.Sprintf("%d consecutive failed attempts; last error: %s", a.Number-dl.Base, a.Error)
		d.decideDisable(ctx, p, first, false)
	}
}

// decideDisable asks the store for the decision (a few tries: the outcome
// is recorded, nothing else would take it) and wakes the disabler when the
// endpoint is to be disabled.
func (d *Dispatcher) decideDisable(ctx context.Context, p PendingDisable, since time.Time, force bool) {
	log := d.deps.Logger
	for i := 0; ; i++ {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		ok, err := d.deps.Stats.ClaimDisable(sctx, p, since, force)
		cancel()
		if err == nil {
			if ok {
				log.WarnContext(ctx, "decided to disable an endpoint", "account_id", p.AccountID, "endpoint_id", p.EndpointID, "reason", p.Reason)
				d.kickDisabler()
			}
			return
		}
		if i+1 == decideTries {
			log.ErrorContext(ctx, "deciding whether to disable an endpoint failed; the next final failure decides again",
				"endpoint_id", p.EndpointID, "reason", p.Reason, "error", err.Error())
			return
		}
		time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
	}
}

func (d *Dispatcher) kickDisabler() {
	select {
	case d.disableKick <- struct{}{}:
	default:
	}
}

// StartDisabler starts the loop that carries out pending disables, in
// this process, until ctx ends or the returned stop is called. stop waits
// (within its ctx) for the try in progress to be saved or handed back.
// Every delivery process runs one: a pending disable is leased by one at a
// time, and one left by a stopped or crashed process is taken over. poll
// is DisablePoll when 0.
func (d *Dispatcher) StartDisabler(ctx context.Context, poll time.Duration) (stop func(context.Context)) {
	if poll <= 0 {
		poll = DisablePoll
	}
	return pollLoop[PendingDisable]{
		what: "pending disables", batch: 16, kick: d.disableKick,
		pause: func() time.Duration { return poll },
		claim: func(ctx context.Context, now time.Time, max int) ([]PendingDisable, error) {
			return d.deps.Stats.ClaimDisables(ctx, now, now.Add(disableLease), max)
		},
		handle: d.carryOut,
	}.start(ctx, d, d.deps.Stats != nil && d.deps.Registry != nil)
}

// carryOut takes a claimed pending disable one step further: the registry
// call (and, once it confirmed, the endpoint.disabled event folded in) until
// it is confirmed, then the notice. Each step's result is saved
// before the next begins, so a retry never repeats a confirmed step: the
// notice is sent only after the registry confirmed, and once unless the
// process dies between the mail server's acceptance and FinishDisable (at
// least once, never lost while the mail server accepts it within
// maxNoticeTries).
func (d *Dispatcher) carryOut(ctx context.Context, p PendingDisable) {
	log := d.deps.Logger
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	args := []any{"account_id", p.AccountID, "endpoint_id", p.EndpointID, "reason", p.Reason}
	// retry saves a failed try: due again after the backoff, or now (the
	// try counted not) when it failed because this process is stopping.
	retry := func(what string, err error) {
		next := d.deps.Clock.Now()
		if ctx.Err() == nil {
			next = next.Add(min(disableBackoff<<min(p.Tries, 16), maxDisableBackoff))
			p.Tries++
		}
		if _, serr := d.deps.Stats.SaveDisable(wctx, p, next, err.Error()); serr != nil {
			log.ErrorContext(ctx, "saving a pending disable failed; it is retried when its lease ends", append(args, "error", serr.Error())...)
		}
		if ctx.Err() == nil {
			log.WarnContext(ctx, what+"; retried", append(args, "tries", p.Tries, "retry_at", next, "error", err.Error())...)
		}
	}
	finish := func() {
		if _, err := d.deps.Stats.FinishDisable(wctx, p); err != nil {
			log.ErrorContext(ctx, "removing a done pending disable failed", append(args, "error", err.Error())...)
		}
	}

	if !p.Notify {
		rctx, rcancel := context.WithTimeout(ctx, lookupTimeout)
		err := d.deps.Registry.DisableEndpoint(rctx, p.AccountID, p.EndpointID, p.Reason)
		rcancel()
		switch {
		case errors.Is(err, apierr.ErrNotFound):
			log.InfoContext(ctx, "endpoint to disable no longer exists", args...)
			finish() // deleted meanwhile: nothing to disable or announce
			return
		case err != nil:
			retry("disabling an endpoint failed; it stays enabled until the registry confirms", err)
			return
		}
		if d.deps.Invalidate != nil {
			d.deps.Invalidate(p.AccountID)
		}
		log.WarnContext(ctx, "endpoint disabled", args...)
		// endpoint.disabled, retried with the disable until it is folded
		// in (a repeat is counted once: its key is the decision).
		if err := d.announceDisabled(ctx, p); err != nil {
			retry("recording endpoint.disabled failed", err)
			return
		}
		if d.deps.Mailer == nil {
			finish()
			return
		}
		p.Notify, p.Tries = true, 0
		ok, err := d.deps.Stats.SaveDisable(wctx, p, p.LeaseUntil, "")
		if err != nil || !ok {
			// Not saved: whoever takes it next asks the registry again
			// (harmless: the endpoint keeps its first reason), then mails.
			log.WarnContext(ctx, "the registry confirmed a disable but saving that failed; it is repeated", args...)
			return
		}
	}

	rctx, rcancel := context.WithTimeout(ctx, lookupTimeout)
	to, err := d.deps.Registry.NotificationEmail(rctx, p.AccountID)
	rcancel()
	switch {
	case errors.Is(err, apierr.ErrNotFound):
		finish()
		return
	case err != nil:
		d.noticeFailed(ctx, p, args, "reading the notification email failed", err, retry, finish)
		return
	case to == "":
		log.WarnContext(ctx, "endpoint disabled; notice not emailed: no notification email set", args...)
		finish()
		return
	}
	if err := d.deps.Mailer.Send(ctx, DisabledNotice(to, p.EndpointID, p.URL, p.Reason, p.LastError, p.DecidedAt)); err != nil {
		d.noticeFailed(ctx, p, args, "emailing the disabled notice failed", err, retry, finish)
		return
	}
	finish()
}

// noticeFailed retries the notice, or gives it up, logged, after
// maxNoticeTries.
func (d *Dispatcher) noticeFailed(ctx context.Context, p PendingDisable, args []any, what string, err error, retry func(string, error), finish func()) {
	if p.Tries+1 < maxNoticeTries || ctx.Err() != nil {
		retry(what, err)
		return
	}
	d.deps.Logger.ErrorContext(ctx, what+"; notice given up", append(args, "tries", p.Tries+1, "error", err.Error())...)
	finish()
}

// DisabledNotice is the email telling an account its endpoint was
// disabled.
func DisabledNotice(to, endpointID, url, reason, lastErr string, at time.Time) mailer.Message {
	var b strings.Builder
	fmt.Fprintf(&b, "VoxScriber Webhooks disabled one of your webhook endpoints.\n\n")
	fmt.Fprintf(&b, "Endpoint:    %s\nURL:         %s\nDisabled at: %s\nReason:      %s\nLast error:  %s\n\n",
		endpointID, url, at.UTC().Format(time.RFC3339), reason, lastErr)
	b.WriteString("While it is disabled no events are sent to it; its pending deliveries are parked, not dropped.\n\n")
	b.WriteString("To re-enable it once the receiver works again (parked deliveries then resume):\n")
	fmt.Fprintf(&b, "  - REST: POST /v1/endpoints/%s:enable with your API key, or\n", endpointID)
	b.WriteString("  - the dashboard: Settings -> Webhooks -> Enable.\n")
	fmt.Fprintf(&b, "Deliveries that failed meanwhile can be re-sent with POST /v1/endpoints/%s:replay {\"since\": \"<RFC 3339 time>\"}.\n", endpointID)
	return mailer.Message{To: to, Subject: "Webhook endpoint " + endpointID + " was disabled", Body: b.String()}
}
