package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The Jaeger query API's trace shape (GET /api/traces/{id}), the parts
// used here.
type jaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []jaegerSpan             `json:"spans"`
	Processes map[string]jaegerProcess `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []jaegerRef `json:"references"`
	StartTime     int64       `json:"startTime"` // µs since the epoch
	Duration      int64       `json:"duration"`  // µs
	Tags          []jaegerTag `json:"tags"`
	ProcessID     string      `json:"processID"`
}

type jaegerRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jaegerTag struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

type jaegerProcess struct {
	ServiceName string `json:"serviceName"`
}

func (s *jaegerSpan) tag(k string) (string, bool) {
	for _, t := range s.Tags {
		if t.Key == k {
			switch v := t.Value.(type) {
			case float64:
				return fmt.Sprintf("%v", v), true
			default:
				return fmt.Sprint(v), true
			}
		}
	}
	return "", false
}

func (s *jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	if len(s.References) > 0 {
		return s.References[0].SpanID
	}
	return ""
}

// status sums up a span's outcome: the HTTP status of attempts and
// receivers, the gRPC code when not OK, ERROR with its message.
func (s *jaegerSpan) status() string {
	var parts []string
	if v, ok := s.tag("http.response.status_code"); ok {
		parts = append(parts, "HTTP "+v)
	} else if v, ok := s.tag("http.status_code"); ok {
		parts = append(parts, "HTTP "+v)
	}
	if v, ok := s.tag("rpc.grpc.status_code"); ok && v != "0" {
		parts = append(parts, "grpc code "+v)
	}
	if v, ok := s.tag("webhook.attempt"); ok {
		parts = append([]string{"attempt " + v}, parts...)
	}
	if v, _ := s.tag("otel.status_code"); v == "ERROR" {
		msg, _ := s.tag("otel.status_description")
		parts = append(parts, strings.TrimSpace("ERROR "+msg))
	} else if v, _ := s.tag("error"); v == "true" && len(parts) == 0 {
		parts = append(parts, "ERROR")
	}
	if len(parts) == 0 {
		return "ok"
	}
	return strings.Join(parts, ", ")
}

// printTree writes the trace as a tree: children under their parent,
// siblings in start order; spans whose parent is missing are roots.
func printTree(w io.Writer, tr *jaegerTrace) error {
	byID := map[string]*jaegerSpan{}
	for i := range tr.Spans {
		byID[tr.Spans[i].SpanID] = &tr.Spans[i]
	}
	children := map[string][]*jaegerSpan{}
	var roots []*jaegerSpan
	services := map[string]bool{}
	var first, last int64
	for i := range tr.Spans {
		s := &tr.Spans[i]
		services[tr.Processes[s.ProcessID].ServiceName] = true
		if first == 0 || s.StartTime < first {
			first = s.StartTime
		}
		last = max(last, s.StartTime+s.Duration)
		if p := s.parent(); p != "" && byID[p] != nil {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b *jaegerSpan) int {
		if a.StartTime != b.StartTime {
			return int(a.StartTime - b.StartTime)
		}
		return strings.Compare(a.SpanID, b.SpanID)
	}
	slices.SortFunc(roots, byStart)
	for _, c := range children {
		slices.SortFunc(c, byStart)
	}
	fmt.Fprintf(w, "trace %s: %d spans, %d services, %s\n\n", tr.TraceID, len(tr.Spans), len(services), dur(last-first))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SPAN\tSERVICE\tSTART\tDURATION\tSTATUS")
	var walk func(s *jaegerSpan, prefix string, lastChild, root bool)
	walk = func(s *jaegerSpan, prefix string, lastChild, root bool) {
		branch, next := "", prefix
		if !root {
			branch, next = "├─ ", prefix+"│  "
			if lastChild {
				branch, next = "└─ ", prefix+"   "
			}
		}
		fmt.Fprintf(tw, "%s%s%s\t%s\t+%s\t%s\t%s\n", prefix, branch, s.OperationName,
			tr.Processes[s.ProcessID].ServiceName, dur(s.StartTime-first), dur(s.Duration), s.status())
		kids := children[s.SpanID]
		for i, c := range kids {
			walk(c, next, i == len(kids)-1, false)
		}
	}
	for _, r := range roots {
		walk(r, "", true, true)
	}
	return tw.Flush()
}

// dur prints microseconds the way people read them: 850µs, 12.3ms, 1.52s.
func dur(us int64) string {
	d := time.Duration(us) * time.Microsecond
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", us)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
