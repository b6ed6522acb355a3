// Command vxctl is the operators' CLI of VoxScriber Webhooks.
//
//	vxctl trace [--gateway URL] [--api-key KEY] [--jaeger URL] <event id>
//	vxctl trace --trace-id <trace id> [--jaeger URL]
//	vxctl endpoints list [--page-size N]
//	vxctl endpoints get <id>
//	vxctl endpoints create --url URL --events a,b [--description D] [--ordering unordered|ordered-by-key]
//	vxctl endpoints update <id> [--url URL] [--events a,b] [--description D] [--ordering unordered|ordered-by-key]
//
// trace finds an event's trace id through the REST API (GET
// /v1/events/{id}), fetches the trace from the Jaeger query API (GET
// /api/traces/{id}) and prints the span tree: service, operation, duration
// and status, indented by parent.
//
// endpoints manages the account's webhook endpoints through the gateway's
// REST API (/v1/endpoints, proto3 JSON): list follows nextPageToken and
// prints a table (id, status, ordering, url, event types); create prints the
// new endpoint and its signing secret, which is shown only that once; update
// sends PATCH with an updateMask naming exactly the flags given. --ordering
// ordered-by-key makes an endpoint receive the events that share an ordering
// key one at a time, in publish order (ENDPOINT_ORDERING_ORDERED_BY_KEY).
//
// Every command takes --gateway (default $VXCTL_GATEWAY, else
// http://127.0.0.1:8080), --api-key (default $VXCTL_API_KEY, preferred: it
// stays out of the process list) and --timeout. An API error is printed as
// "vxctl: <HTTP status>: <message>" with a non-zero exit status.
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
	os.Exit(report(os.Stderr, err))
}

// report prints run's error ("vxctl: 404 Not Found: <message>" for an API
// error) and returns the exit status: 0, 2 for help, 1 for an error.
func report(stderr io.Writer, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 2
	}
	fmt.Fprintln(stderr, "vxctl:", err)
	return 1
}

const usage = `usage: vxctl <command> [flags]

commands:
  trace <event id>       print the event's trace (span tree) from Jaeger
  endpoints list         list the account's webhook endpoints
  endpoints get <id>     show one endpoint
  endpoints create       add an endpoint (--url, --events; prints its secret once)
  endpoints update <id>  change an endpoint's --url, --events, --description, --ordering

Run "vxctl <command> -h" for a command's flags. The API key comes from
VXCTL_API_KEY (preferred: it stays out of the process list) or --api-key.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "trace":
		return traceCmd(ctx, args[1:], stdout, stderr)
	case "endpoints":
		return endpointsCmd(ctx, args[1:], stdout, stderr)
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

// gatewayFlags are the flags of every command that calls the REST API.
type gatewayFlags struct {
	gateway, apiKey *string
	timeout         *time.Duration
}

func addGatewayFlags(fs *flag.FlagSet) *gatewayFlags {
	return &gatewayFlags{
		gateway: fs.String("gateway", envOr("VXCTL_GATEWAY", "http://127.0.0.1:8080"), "REST gateway base URL (VXCTL_GATEWAY)"),
		apiKey:  fs.String("api-key", "", "API key of the account (default $VXCTL_API_KEY)"),
		timeout: fs.Duration("timeout", 10*time.Second, "timeout of each HTTP request"),
	}
}

// client is called after fs.Parse.
func (g *gatewayFlags) client() *client {
	key := *g.apiKey
	if key == "" {
		key = os.Getenv("VXCTL_API_KEY")
	}
	return &client{http: &http.Client{Timeout: *g.timeout}, gateway: *g.gateway, apiKey: key}
}

func traceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vxctl trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gf := addGatewayFlags(fs)
	jaeger := fs.String("jaeger", envOr("VXCTL_JAEGER", "http://127.0.0.1:16686"), "Jaeger query base URL (VXCTL_JAEGER)")
	traceID := fs.String("trace-id", "", "use this trace id instead of looking up an event")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vxctl trace [flags] <event id>\n       vxctl trace --trace-id <id> [flags]\n\nThe API key (for GET /v1/events/{id}) comes from VXCTL_API_KEY (preferred: it stays out of the process list) or --api-key.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := gf.client()
	c.jaeger = *jaeger
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
