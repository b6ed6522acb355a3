package grpctest

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCodeProblem(t *testing.T) {
	notFound := status.Error(codes.NotFound, `endpoint "ep_1" not found`)
	tests := []struct {
		name  string
		err   error
		want  codes.Code
		parts []string
		ok    bool
	}{
		{"code matches", notFound, codes.NotFound, nil, true},
		{"code and parts match", notFound, codes.NotFound, []string{"ep_1", "not found"}, true},
		{"other code", notFound, codes.InvalidArgument, nil, false},
		{"part missing", notFound, codes.NotFound, []string{"ep_2"}, false},
		{"nil is OK", nil, codes.OK, nil, true},
		{"nil is not NotFound", nil, codes.NotFound, nil, false},
		{"a plain error is Unknown", errors.New("boom"), codes.Unknown, []string{"boom"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := codeProblem(tt.err, tt.want, tt.parts)
			if (got == "") != tt.ok {
				t.Fatalf("codeProblem = %q, want ok=%v", got, tt.ok)
			}
		})
	}
}
