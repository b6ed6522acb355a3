package mailer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// smtpOnce accepts one message and returns its DATA.
func smtpOnce(t *testing.T) (addr string, got <-chan string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		say := func(s string) { io.WriteString(c, s+"\r\n") }
		say("220 hi")
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(strings.TrimSpace(l)); {
			case cmd == "DATA":
				say("354 go")
				var b strings.Builder
				for {
					l, _ := r.ReadString('\n')
					if l == ".\r\n" || l == "" {
						break
					}
					b.WriteString(l)
				}
				ch <- b.String()
				say("250 ok")
			case cmd == "QUIT":
				say("221 bye")
				return
			default:
				say("250 ok")
			}
		}
	}()
	return ln.Addr().String(), ch
}

func TestSMTPSends(t *testing.T) {
	addr, got := smtpOnce(t)
	m := Message{To: "ops@example.test", Subject: "Endpoint\r\nBcc: x disabled", Body: "line 1\nline 2"}
	if err := (SMTP{Addr: addr, From: "hooks@example.test"}).Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	data := <-got
	for _, want := range []string{"From: hooks@example.test\r\n", "To: ops@example.test\r\n", "Subject: Endpoint  Bcc: x disabled\r\n", "line 1\r\nline 2\r\n"} {
		if !strings.Contains(data, want) {
			t.Errorf("message lacks %q:\n%s", want, data)
		}
	}
}

type flaky struct {
	fails int32
	n     atomic.Int32
	mu    sync.Mutex
	sent  []Message
}

func (f *flaky) Send(_ context.Context, m Message) error {
	if f.n.Add(1) <= f.fails {
		return errors.New("relay down")
	}
	f.mu.Lock()
	f.sent = append(f.sent, m)
	f.mu.Unlock()
	return nil
}

func TestAsyncRetriesThenLogs(t *testing.T) {
	var logs strings.Builder
	var lmu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		lmu.Lock()
		defer lmu.Unlock()
		return logs.Write(p)
	}), nil))
	f := &flaky{fails: 2}
	a := NewAsync(f, log, AsyncConfig{Tries: 3, Backoff: time.Millisecond, Queue: 10})
	_ = a.Send(context.Background(), Message{To: "a@x", Subject: "one"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.Close(ctx)
	if len(f.sent) != 1 {
		t.Fatalf("sent %d after two failures, want 1", len(f.sent))
	}

	dead := &flaky{fails: 100}
	a = NewAsync(dead, log, AsyncConfig{Tries: 2, Backoff: time.Millisecond, Queue: 10})
	_ = a.Send(context.Background(), Message{To: "b@x", Subject: "lost?"})
	a.Close(ctx)
	lmu.Lock()
	defer lmu.Unlock()
	if !strings.Contains(logs.String(), "giving up") || !strings.Contains(logs.String(), "lost?") {
		t.Errorf("final failure not logged:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
