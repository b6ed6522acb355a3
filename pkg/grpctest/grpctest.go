// Package grpctest holds the assertions the suite's tests make about gRPC
// answers, so that every test checks a status the same way.
package grpctest

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RequireCode stops the test unless err carries the status code want and
// its message contains each of msgParts.
func RequireCode(t testing.TB, err error, want codes.Code, msgParts ...string) {
	t.Helper()
	if problem := codeProblem(err, want, msgParts); problem != "" {
		t.Fatal(problem)
	}
}

// CheckCode is RequireCode that records the failure and lets the test go
// on; it reports whether err matched.
func CheckCode(t testing.TB, err error, want codes.Code, msgParts ...string) bool {
	t.Helper()
	if problem := codeProblem(err, want, msgParts); problem != "" {
		t.Error(problem)
		return false
	}
	return true
}

func codeProblem(err error, want codes.Code, msgParts []string) string {
	st := status.Convert(err) // nil is OK; a non-status error is Unknown
	if st.Code() != want {
		return "got " + st.Code().String() + " " + quote(st.Message()) + ", want " + want.String()
	}
	for _, p := range msgParts {
		if !strings.Contains(st.Message(), p) {
			return want.String() + " message " + quote(st.Message()) + " does not contain " + quote(p)
		}
	}
	return ""
}

func quote(s string) string { return `"` + s + `"` }
