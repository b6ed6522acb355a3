package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/ssrf"
)

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return &url.Error{Op: "Post", URL: "https://example.com/hook", Err: err} }
	dial := func(err error) error { return wrap(&net.OpError{Op: "dial", Net: "tcp", Err: err}) }
	tests := []struct {
		name     string
		r        Response
		want     ErrorType
		contains string
	}{
		{"200", Response{StatusCode: 200}, ErrorNone, ""},
		{"204", Response{StatusCode: 204}, ErrorNone, ""},
		{"500", Response{StatusCode: 500}, ErrorHTTPStatus, "HTTP 500 Internal Server Error"},
		{"302 names the Location", Response{StatusCode: 302, Header: http.Header{"Location": {"https://elsewhere.example/"}}},
			ErrorHTTPStatus, "redirects are not followed; Location: https://elsewhere.example/"},
		{"ssrf blocked", Response{Err: dial(&ssrf.Error{Kind: ssrf.KindBlocked, Message: "host 127.0.0.1 is a loopback address"})},
			ErrorBlocked, "loopback"},
		{"ssrf scheme", Response{Err: &ssrf.Error{Kind: ssrf.KindScheme, Message: "url: scheme \"http\" is not allowed"}},
			ErrorBlocked, "scheme"},
		{"ssrf dns", Response{Err: dial(&ssrf.Error{Kind: ssrf.KindDNS, Message: "cannot resolve host nx.example", Err: &net.DNSError{Err: "no such host", Name: "nx.example", IsNotFound: true}})},
			ErrorDNS, "cannot resolve"},
		{"plain dns", Response{Err: dial(&net.DNSError{Err: "no such host", Name: "nx.example"})}, ErrorDNS, "no such host"},
		{"refused", Response{Err: dial(os.NewSyscallError("connect", syscall.ECONNREFUSED))}, ErrorConnect, "connection refused"},
		{"unreachable", Response{Err: dial(os.NewSyscallError("connect", syscall.EHOSTUNREACH))}, ErrorConnect, "no route"},
		{"certificate", Response{Err: wrap(x509.UnknownAuthorityError{})}, ErrorTLS, "certificate"},
		{"deadline", Response{Err: wrap(context.DeadlineExceeded)}, ErrorTimeout, "no response within 5s"},
		{"other", Response{Err: wrap(errors.New("unexpected EOF"))}, ErrorOther, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg := Classify(tt.r, 5*time.Second)
			if got != tt.want {
				t.Fatalf("type = %q (%s), want %q", got, msg, tt.want)
			}
			if !strings.Contains(msg, tt.contains) {
				t.Fatalf("message %q does not contain %q", msg, tt.contains)
			}
			if strings.Contains(msg, `Post "`) {
				t.Fatalf("message %q repeats the URL", msg)
			}
		})
	}
}

func ExampleClassify() {
	_, msg := Classify(Response{StatusCode: 503}, 5*time.Second)
	fmt.Println(msg)
	// Output: HTTP 503 Service Unavailable (a 2xx answer is expected)
}
