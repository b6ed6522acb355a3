// Package mailer sends the delivery service's notices (an endpoint was
// disabled) by email. Send never blocks its caller for long: Async queues
// the message and retries a bounded number of times in the background,
// logging a notice it finally could not send, so none is lost silently.
package mailer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"sync"
	"time"
)

// Message is one plain-text email.
type Message struct {
	To      string
	Subject string
	Body    string
}

// Mailer sends a message.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

// Defaults of the SMTP mailer.
const (
	// DefaultFrom is the sender address of notices (SMTP_FROM's default).
	DefaultFrom = "webhooks@voxscriber.invalid"
	// DefaultSMTPTimeout bounds one SMTP conversation.
	DefaultSMTPTimeout = 10 * time.Second
)

// SMTP sends through an SMTP server without authentication (a relay on the
// cluster network), using net/smtp.
type SMTP struct {
	Addr string // host:port
	From string
	// Timeout bounds one conversation (DefaultSMTPTimeout when 0).
	Timeout time.Duration
}

// Send implements Mailer.
func (s SMTP) Send(ctx context.Context, m Message) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultSMTPTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp dial %s: %w", s.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp greeting: %w", err)
	}
	defer c.Close()
	if err := c.Mail(s.From); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("smtp RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(Format(s.From, m, time.Now())); err != nil {
		return fmt.Errorf("smtp body: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp end of data: %w", err)
	}
	return c.Quit()
}

// Format renders a message with its headers, CRLF line endings.
func Format(from string, m Message, now time.Time) []byte {
	var b strings.Builder
	clean := func(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n", clean(from), clean(m.To), clean(m.Subject), now.Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	body := strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n", "\r\n")
	b.WriteString(body)
	if !strings.HasSuffix(body, "\r\n") {
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

// Log "sends" by logging the message: the mailer when SMTP_ADDR is unset.
type Log struct{ Logger *slog.Logger }

// Send implements Mailer.
func (l Log) Send(ctx context.Context, m Message) error {
	l.Logger.WarnContext(ctx, "notice (no SMTP_ADDR configured, not emailed)", "to", m.To, "subject", m.Subject, "body", m.Body)
	return nil
}

// Async queues messages for a background sender with bounded retries.
type Async struct {
	next     Mailer
	log      *slog.Logger
	attempts int
	backoff  time.Duration
	queue    chan Message
	done     chan struct{}
	mu       sync.Mutex
	closed   bool
}

// AsyncConfig bounds the background sender of an Async. A zero field takes
// its default (DefaultAsyncConfig).
type AsyncConfig struct {
	// Tries is how many times a message is tried before it is logged as
	// undeliverable.
	Tries int
	// Backoff is the wait after the first failed try; it doubles after
	// each further one.
	Backoff time.Duration
	// Queue is how many messages may wait; beyond that Send logs the
	// notice instead.
	Queue int
}

// Defaults of AsyncConfig: 5 tries over about 30 s (2+4+8+16 s of
// backoff), and room for 1000 waiting notices.
const (
	DefaultTries   = 5
	DefaultBackoff = 2 * time.Second
	DefaultQueue   = 1000
)

// DefaultAsyncConfig is the notice sender of the delivery service.
func DefaultAsyncConfig() AsyncConfig {
	return AsyncConfig{Tries: DefaultTries, Backoff: DefaultBackoff, Queue: DefaultQueue}
}

// withDefaults fills the zero fields of c.
func (c AsyncConfig) withDefaults() AsyncConfig {
	d := DefaultAsyncConfig()
	if c.Tries <= 0 {
		c.Tries = d.Tries
	}
	if c.Backoff <= 0 {
		c.Backoff = d.Backoff
	}
	if c.Queue <= 0 {
		c.Queue = d.Queue
	}
	return c
}

// NewAsync starts a background sender over next: each message is tried up
// to cfg.Tries times, cfg.Backoff doubling between tries; at most cfg.Queue
// messages wait (beyond that Send logs the notice instead).
func NewAsync(next Mailer, log *slog.Logger, cfg AsyncConfig) *Async {
	cfg = cfg.withDefaults()
	a := &Async{next: next, log: log, attempts: cfg.Tries, backoff: cfg.Backoff,
		queue: make(chan Message, cfg.Queue), done: make(chan struct{})}
	go a.run()
	return a
}

// Send queues m; it never blocks.
func (a *Async) Send(ctx context.Context, m Message) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		a.log.ErrorContext(ctx, "shutting down; notice not emailed", "to", m.To, "subject", m.Subject, "body", m.Body)
		return nil
	}
	select {
	case a.queue <- m:
	default:
		a.log.ErrorContext(ctx, "notice queue full; notice not emailed", "to", m.To, "subject", m.Subject, "body", m.Body)
	}
	return nil
}

func (a *Async) run() {
	defer close(a.done)
	for m := range a.queue {
		wait := a.backoff
		var err error
		for i := 0; i < a.attempts; i++ {
			if err = a.next.Send(context.Background(), m); err == nil {
				break
			}
			if i+1 < a.attempts {
				time.Sleep(wait)
				wait *= 2
			}
		}
		if err != nil {
			a.log.Error("emailing a notice failed; giving up", "to", m.To, "subject", m.Subject,
				"attempts", a.attempts, "error", err.Error(), "body", m.Body)
		}
	}
}

// Close stops taking messages and waits until the queued ones are sent or
// ctx ends.
func (a *Async) Close(ctx context.Context) {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
	a.mu.Unlock()
	select {
	case <-a.done:
	case <-ctx.Done():
		a.log.Warn("shutdown: notices still queued were not emailed", "queued", len(a.queue))
	}
}
