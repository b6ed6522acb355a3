// Command vxctl is the operators' CLI of VoxScriber Webhooks.
//
//	vxctl trace [--gateway URL] [--api-key KEY] [--jaeger URL] <event id>
//	vxctl trace --trace-id <trace id> [--jaeger URL]
//
// trace finds an event's trace id through the REST API (GET
// /v1/events/{id}, API key from --api-key or VXCTL_API_KEY), fetches the
// trace from the Jaeger query API (GET /api/traces/{id}) and prints the
// span tree: service, operation, duration and status, indented by parent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vxctl:", err)
		os.Exit(1)
	}
}

const usage = `usage: vxctl <command> [flags]

commands:
  trace <event id>   print the event's trace (span tree) from Jaeger
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "trace":
		return traceCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func traceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vxctl trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gateway := fs.String("gateway", envOr("VXCTL_GATEWAY", "http://127.0.0.1:8080"), "REST gateway base URL (VXCTL_GATEWAY)")
	jaeger := fs.String("jaeger", envOr("VXCTL_JAEGER", "http://127.0.0.1:16686"), "Jaeger query base URL (VXCTL_JAEGER)")
	traceID := fs.String("trace-id", "", "use this trace id instead of looking up an event")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each HTTP request")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vxctl trace [flags] <event id>\n       vxctl trace --trace-id <id> [flags]\n\nThe API key comes from VXCTL_API_KEY (preferred: it stays out of the process list) or --api-key.")
		fs.PrintDefaults()
	}
	apiKey := fs.String("api-key", "", "API key for GET /v1/events/{id} (default $VXCTL_API_KEY)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *apiKey == "" {
		*apiKey = os.Getenv("VXCTL_API_KEY")
	}
	c := &client{http: &http.Client{Timeout: *timeout}, gateway: *gateway, jaeger: *jaeger, apiKey: *apiKey}
	id := *traceID
	switch {
	case id == "" && fs.NArg() != 1:
		fs.Usage()
		return errors.New("give one event id, or --trace-id")
	case id == "":
		var err error
		if id, err = c.eventTraceID(ctx, fs.Arg(0)); err != nil {
			return err
		}
	}
	tr, err := c.trace(ctx, id)
	if err != nil {
		return err
	}
	return printTree(stdout, tr)
}
