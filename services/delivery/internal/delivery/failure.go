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
// Disabling asks the registry (DisableEndpointBySystem), then emails the
// account's notification address. The endpoint's other deliveries are
// parked when they come due (prepare sees the endpoint is not ACTIVE);
// enabling it again resumes them (Service.ResumeParked) with a fresh round
// of the retry schedule.

// EndpointStats remembers per endpoint when it last succeeded and when the
// system last decided to disable it.
type EndpointStats interface {
	// MarkSuccess records a successful attempt finished at at.
	MarkSuccess(ctx context.Context, endpointID string, at time.Time) error
	// ClaimDisable reports whether the caller should disable the endpoint:
	// it had no success at or after since (ignored when force) and the
	// system did not already decide to disable it since then. A true answer
	// records the decision, so concurrent failures disable (and email) once.
	ClaimDisable(ctx context.Context, endpointID string, since, now time.Time, force bool) (bool, error)
}

// Registry is what failure handling needs of the registry.
type Registry interface {
	// DisableEndpoint marks the endpoint DISABLED with a reason.
	DisableEndpoint(ctx context.Context, accountID, endpointID, reason string) error
	// NotificationEmail is the account's notice address ("" when unset).
	NotificationEmail(ctx context.Context, accountID string) (string, error)
}

// disableTries bounds the registry calls of one disable.
const disableTries = 4

// afterAttempt applies the failure rules to a recorded attempt.
func (d *Dispatcher) afterAttempt(ctx context.Context, job Job, t *Target, o *Outcome) {
	st, a, dl := d.deps.Stats, o.Attempt, &job.Delivery
	if st == nil || a == nil || dl.Test {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	log := d.deps.Logger
	switch {
	case a.Succeeded():
		if err := st.MarkSuccess(sctx, dl.EndpointID, o.Now); err != nil {
			log.WarnContext(ctx, "recording an endpoint's success failed", "endpoint_id", dl.EndpointID, "error", err.Error())
		}
	case a.StatusCode == http.StatusGone:
		ok, err := st.ClaimDisable(sctx, dl.EndpointID, a.Start, o.Now, true)
		if err != nil {
			log.ErrorContext(ctx, "410 Gone: deciding to disable the endpoint failed", "endpoint_id", dl.EndpointID, "error", err.Error())
		}
		if ok {
			d.startDisable(ctx, dl, t.URL, "the endpoint answered 410 Gone", a.Error)
		}
	case o.Status == StatusFailed && a.Number-dl.Base >= d.cfg.Retry.MaxAttempts():
		first := dl.FirstAttempt
		if a.Number-dl.Base == 1 {
			first = a.Start
		} else if first.IsZero() {
			first = dl.CreateTime
		}
		ok, err := st.ClaimDisable(sctx, dl.EndpointID, first, o.Now, false)
		if err != nil {
			log.ErrorContext(ctx, "deciding to disable a failing endpoint failed", "endpoint_id", dl.EndpointID, "error", err.Error())
		}
		if ok {
			n := a.Number - dl.Base
			reason := fmt.Sprintf("%d consecutive failed attempts; last error: %s", n, a.Error)
			d.startDisable(ctx, dl, t.URL, reason, a.Error)
		}
	}
}

// startDisable disables the endpoint and sends the notice in the
// background: the worker slot is not held.
func (d *Dispatcher) startDisable(ctx context.Context, dl *Delivery, url, reason, lastErr string) {
	if d.deps.Registry == nil {
		d.deps.Logger.ErrorContext(ctx, "endpoint should be disabled but no registry is wired", "endpoint_id", dl.EndpointID, "reason", reason)
		return
	}
	acct, ep, now := dl.AccountID, dl.EndpointID, d.deps.Clock.Now()
	bg := context.WithoutCancel(ctx)
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		d.disable(bg, acct, ep, url, reason, lastErr, now)
	}()
}

func (d *Dispatcher) disable(ctx context.Context, acct, ep, url, reason, lastErr string, now time.Time) {
	log := d.deps.Logger
	var err error
	wait := 500 * time.Millisecond
	for i := 0; i < disableTries; i++ {
		rctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		err = d.deps.Registry.DisableEndpoint(rctx, acct, ep, reason)
		cancel()
		if err == nil || errors.Is(err, apierr.ErrNotFound) {
			break
		}
		time.Sleep(wait)
		wait *= 2
	}
	if errors.Is(err, apierr.ErrNotFound) {
		return // deleted meanwhile: nothing to disable or announce
	}
	if err != nil {
		log.ErrorContext(ctx, "disabling an endpoint failed; it stays enabled", "endpoint_id", ep, "reason", reason, "error", err.Error())
		return
	}
	if d.deps.Invalidate != nil {
		d.deps.Invalidate(acct)
	}
	log.WarnContext(ctx, "endpoint disabled", "account_id", acct, "endpoint_id", ep, "reason", reason)
	if d.deps.Mailer == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	to, err := d.deps.Registry.NotificationEmail(rctx, acct)
	cancel()
	if err != nil || to == "" {
		msg := "no notification email set"
		if err != nil {
			msg = err.Error()
		}
		log.WarnContext(ctx, "endpoint disabled; notice not emailed", "account_id", acct, "endpoint_id", ep, "reason", reason, "why", msg)
		return
	}
	_ = d.deps.Mailer.Send(ctx, DisabledNotice(to, ep, url, reason, lastErr, now))
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

// WaitBackground waits until background disables finish or ctx ends.
func (d *Dispatcher) WaitBackground(ctx context.Context) {
	done := make(chan struct{})
	go func() { d.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
