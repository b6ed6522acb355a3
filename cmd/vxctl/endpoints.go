package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// endpoint is the REST shape of an endpoint (proto3 JSON of
// voxscriber.webhooks.registry.v1.Endpoint), the parts vxctl shows.
type endpoint struct {
	ID                 string            `json:"id"`
	URL                string            `json:"url"`
	EventTypes         []string          `json:"eventTypes"`
	Description        string            `json:"description"`
	Status             enumName          `json:"status"`
	Headers            map[string]string `json:"headers"`
	DisabledReason     string            `json:"disabledReason"`
	DisableTime        string            `json:"disableTime"`
	CreateTime         string            `json:"createTime"`
	UpdateTime         string            `json:"updateTime"`
	RateLimitPerSecond int32             `json:"rateLimitPerSecond"`
	Ordering           enumName          `json:"ordering"`
}

// enumName is a proto3 JSON enum: its name, or its number (which proto3
// JSON also allows) kept as digits.
type enumName string

func (e *enumName) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*e = enumName(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*e = enumName(s)
	return nil
}

// The --ordering values and their proto enum names.
var orderings = []struct{ flag, enum string }{
	{"unordered", "ENDPOINT_ORDERING_UNORDERED"},
	{"ordered-by-key", "ENDPOINT_ORDERING_ORDERED_BY_KEY"},
}

func orderingEnum(v string) (string, error) {
	for _, o := range orderings {
		if v == o.flag {
			return o.enum, nil
		}
	}
	return "", fmt.Errorf("--ordering %q: must be unordered or ordered-by-key", v)
}

// orderingName shows an endpoint's ordering the way --ordering spells it;
// unset (UNSPECIFIED) is unordered, the default.
func orderingName(e enumName) string {
	switch e {
	case "", "ENDPOINT_ORDERING_UNSPECIFIED", "0":
		return "unordered"
	}
	for _, o := range orderings {
		if string(e) == o.enum {
			return o.flag
		}
	}
	return string(e)
}

func statusName(e enumName) string {
	if e == "" {
		return "UNSPECIFIED"
	}
	return strings.TrimPrefix(string(e), "ENDPOINT_STATUS_")
}

// eventList parses --events: comma-separated, blanks trimmed, at least one.
func eventList(v string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--events: give at least one event type (comma-separated; see GET /v1/event-types)")
	}
	return out, nil
}

const endpointsUsage = `usage: vxctl endpoints <command> [flags]

commands:
  list                 list the endpoints (id, status, ordering, url, event types)
  get <id>             show one endpoint
  create --url URL --events a,b [--description D] [--ordering unordered|ordered-by-key]
                       add an endpoint; prints its signing secret, shown only this once
  update <id> [--url URL] [--events a,b] [--description D] [--ordering unordered|ordered-by-key]
                       change the fields given, and only those

--ordering ordered-by-key: the events that share an ordering key reach the
endpoint one at a time, in publish order. Every command also takes
--gateway, --api-key (default $VXCTL_API_KEY) and --timeout.
`

func endpointsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, endpointsUsage)
		return flag.ErrHelp
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list":
		return endpointsList(ctx, args, stdout, stderr)
	case "get":
		return endpointsGet(ctx, args, stdout, stderr)
	case "create":
		return endpointsCreate(ctx, args, stdout, stderr)
	case "update":
		return endpointsUpdate(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, endpointsUsage)
		return nil
	}
	fmt.Fprint(stderr, endpointsUsage)
	return fmt.Errorf("unknown endpoints command %q", sub)
}

func newFlagSet(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *gatewayFlags) {
	fs := flag.NewFlagSet("vxctl endpoints "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: vxctl endpoints %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs, addGatewayFlags(fs)
}

// parseWithID parses flags given before or after the one endpoint id
// (the flag package alone stops at the first argument).
func parseWithID(fs *flag.FlagSet, args []string) (string, error) {
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if id == "" && len(rest) > 0 {
		id, rest = rest[0], rest[1:]
	}
	if id == "" || len(rest) > 0 {
		fs.Usage()
		return "", errors.New("give one endpoint id")
	}
	return id, nil
}

func endpointPath(id string) string { return "/v1/endpoints/" + url.PathEscape(id) }

func endpointsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, gf := newFlagSet("list", "list [flags]", stderr)
	pageSize := fs.Int("page-size", 0, "endpoints per request (0: the server's default); every page is fetched")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("list takes no arguments (got %q)", fs.Arg(0))
	}
	c := gf.client()
	var all []endpoint
	seen := map[string]bool{}
	for token := ""; ; {
		q := url.Values{}
		if *pageSize > 0 {
			q.Set("pageSize", strconv.Itoa(*pageSize))
		}
		if token != "" {
			q.Set("pageToken", token)
		}
		var page struct {
			Endpoints     []endpoint `json:"endpoints"`
			NextPageToken string     `json:"nextPageToken"`
		}
		if err := c.rest(ctx, http.MethodGet, "/v1/endpoints", q, nil, &page); err != nil {
			return err
		}
		all = append(all, page.Endpoints...)
		if page.NextPageToken == "" {
			break
		}
		if seen[page.NextPageToken] {
			return fmt.Errorf("the gateway repeated page token %q", page.NextPageToken)
		}
		seen[page.NextPageToken] = true
		token = page.NextPageToken
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tORDERING\tURL\tEVENT TYPES")
	for _, e := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID, statusName(e.Status), orderingName(e.Ordering), e.URL, strings.Join(e.EventTypes, ","))
	}
	return tw.Flush()
}

func endpointsGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, gf := newFlagSet("get", "get <id> [flags]", stderr)
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	var out struct {
		Endpoint endpoint `json:"endpoint"`
	}
	if err := gf.client().rest(ctx, http.MethodGet, endpointPath(id), nil, nil, &out); err != nil {
		return err
	}
	return printEndpoint(stdout, &out.Endpoint, "")
}

func endpointsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, gf := newFlagSet("create", "create --url URL --events a,b [--description D] [--ordering unordered|ordered-by-key] [flags]", stderr)
	u := fs.String("url", "", "the endpoint's HTTPS URL (required)")
	events := fs.String("events", "", "event types, comma-separated (required; * for all)")
	desc := fs.String("description", "", "what the endpoint is for")
	ordering := fs.String("ordering", "", "unordered (the default) or ordered-by-key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("create takes no arguments (got %q)", fs.Arg(0))
	}
	if *u == "" {
		fs.Usage()
		return errors.New("--url is required")
	}
	types, err := eventList(*events)
	if err != nil {
		return err
	}
	body := struct {
		URL         string   `json:"url"`
		EventTypes  []string `json:"eventTypes"`
		Description string   `json:"description,omitempty"`
		Ordering    string   `json:"ordering,omitempty"`
	}{URL: *u, EventTypes: types, Description: *desc}
	if *ordering != "" {
		if body.Ordering, err = orderingEnum(*ordering); err != nil {
			return err
		}
	}
	var out struct {
		Endpoint endpoint `json:"endpoint"`
		Secret   string   `json:"secret"`
	}
	if err := gf.client().rest(ctx, http.MethodPost, "/v1/endpoints", nil, body, &out); err != nil {
		return err
	}
	return printEndpoint(stdout, &out.Endpoint, out.Secret)
}

func endpointsUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, gf := newFlagSet("update", "update <id> [--url URL] [--events a,b] [--description D] [--ordering unordered|ordered-by-key] [flags]", stderr)
	u := fs.String("url", "", "new HTTPS URL")
	events := fs.String("events", "", "new event types, comma-separated (replaces the list)")
	desc := fs.String("description", "", `new description ("" clears it)`)
	ordering := fs.String("ordering", "", "unordered or ordered-by-key")
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	// The body is the Endpoint (proto3 JSON names); the mask names its
	// fields by their proto names, in this order, only those given.
	body := map[string]any{}
	var mask []string
	if given["url"] {
		body["url"] = *u
		mask = append(mask, "url")
	}
	if given["events"] {
		types, err := eventList(*events)
		if err != nil {
			return err
		}
		body["eventTypes"] = types
		mask = append(mask, "event_types")
	}
	if given["description"] {
		body["description"] = *desc
		mask = append(mask, "description")
	}
	if given["ordering"] {
		enum, err := orderingEnum(*ordering)
		if err != nil {
			return err
		}
		body["ordering"] = enum
		mask = append(mask, "ordering")
	}
	if len(mask) == 0 {
		fs.Usage()
		return errors.New("nothing to update: give at least one of --url, --events, --description, --ordering")
	}
	var out struct {
		Endpoint endpoint `json:"endpoint"`
	}
	q := url.Values{"updateMask": {strings.Join(mask, ",")}}
	if err := gf.client().rest(ctx, http.MethodPatch, endpointPath(id), q, body, &out); err != nil {
		return err
	}
	return printEndpoint(stdout, &out.Endpoint, "")
}

// printEndpoint writes one endpoint as aligned "field: value" lines, and
// the secret when there is one (create).
func printEndpoint(w io.Writer, e *endpoint, secret string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("id", e.ID)
	row("url", e.URL)
	row("status", statusName(e.Status))
	row("ordering", orderingName(e.Ordering))
	row("event types", strings.Join(e.EventTypes, ","))
	row("description", e.Description)
	if e.RateLimitPerSecond > 0 {
		row("rate limit", fmt.Sprintf("%d/s", e.RateLimitPerSecond))
	}
	if len(e.Headers) > 0 {
		// Names only: a header's value may be a credential.
		row("headers", strings.Join(slices.Sorted(maps.Keys(e.Headers)), ","))
	}
	row("disabled reason", e.DisabledReason)
	row("disabled", e.DisableTime)
	row("created", e.CreateTime)
	row("updated", e.UpdateTime)
	if err := tw.Flush(); err != nil {
		return err
	}
	if secret != "" {
		_, err := fmt.Fprintf(w, "\nsigning secret (shown only this once: store it now; rotate to get a new one):\n%s\n", secret)
		return err
	}
	return nil
}
