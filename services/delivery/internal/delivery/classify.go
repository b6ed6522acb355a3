package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/voxscriber/webhooks/pkg/ssrf"
)

// Classify explains a response: ErrorNone for a 2xx answer, otherwise the
// error type and a message naming the cause. timeout is the per-attempt
// limit, quoted in timeout messages.
func Classify(r Response, timeout time.Duration) (ErrorType, string) {
	if r.Err == nil {
		return classifyStatus(r)
	}
	t := classifyErr(r.Err)
	msg := causeMessage(r.Err)
	if t == ErrorTimeout {
		msg = fmt.Sprintf("no response within %s (%s)", timeout, msg)
	}
	return t, msg
}

func classifyStatus(r Response) (ErrorType, string) {
	code := r.StatusCode
	if code >= 200 && code < 300 {
		return ErrorNone, ""
	}
	msg := fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	if code >= 300 && code < 400 {
		msg += " (redirects are not followed"
		if loc := r.Header.Get("Location"); loc != "" {
			msg += "; Location: " + loc
		}
		msg += ")"
	} else {
		msg += " (a 2xx answer is expected)"
	}
	return ErrorHTTPStatus, msg
}

func classifyErr(err error) ErrorType {
	var se *ssrf.Error
	if errors.As(err, &se) {
		switch se.Kind {
		case ssrf.KindDNS:
			return ErrorDNS
		default: // blocked, scheme, invalid_url: the guard refused the URL
			return ErrorBlocked
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsTimeout {
			return ErrorTimeout
		}
		return ErrorDNS
	}
	if isTLS(err) {
		return ErrorTLS
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return ErrorTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrorTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || isDial(err) {
		return ErrorConnect
	}
	return ErrorOther
}

func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func isTLS(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		uaerr x509.UnknownAuthorityError
		herr  x509.HostnameError
		cierr x509.CertificateInvalidError
		rherr tls.RecordHeaderError
		alert tls.AlertError
		ech   *tls.ECHRejectionError
	)
	switch {
	case errors.As(err, &verr), errors.As(err, &uaerr), errors.As(err, &herr),
		errors.As(err, &cierr), errors.As(err, &rherr), errors.As(err, &alert), errors.As(err, &ech):
		return true
	}
	return strings.Contains(err.Error(), "tls: ")
}

// causeMessage drops net/http's `Post "<url>": ` prefix, which repeats the
// URL the attempt already records.
func causeMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
