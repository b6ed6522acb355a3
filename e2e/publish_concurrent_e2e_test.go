package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentRESTPublishesEachGetTheirOwnAnswer: REST publishes made at
// once (which ingestion's group commit gathers) each get the answer they
// would get alone, through the real gateway: their own event in their own
// trace (the request's traceparent), their own 400 naming the field, one
// event for repeats of an idempotency key (one of them not a duplicate),
// 401 for a wrong credential; and what was accepted is stored.
func TestConcurrentRESTPublishesEachGetTheirOwnAnswer(t *testing.T) {
	t.Parallel()
	s := startSuite(t, SuiteOptions{Env: map[string]string{"API_RATE_LIMIT": "0"}})
	acct, key := s.NewAccount("group")
	type call struct {
		kind, token, traceID string
		body                 map[string]any
	}
	progress := func(upload string, pct any) map[string]any {
		return map[string]any{"accountId": acct, "type": "transcription.progress",
			"data": map[string]any{"uploadId": upload, "percentage": pct, "estimate": 3}}
	}
	var calls []call
	for i := range 40 {
		calls = append(calls, call{kind: "new", token: producerToken, traceID: fmt.Sprintf("%032x", 0xabc000+i), body: progress(fmt.Sprintf("upl_g%d", i), 50)})
	}
	for i := range 10 {
		calls = append(calls, call{kind: "invalid", token: producerToken, body: progress(fmt.Sprintf("upl_bad%d", i), 140)})
	}
	for i := range 8 {
		b := progress("upl_keyed", 10+i) // a repeat answers with the first one's data
		b["idempotencyKey"] = "group-key-1"
		calls = append(calls, call{kind: "keyed", token: producerToken, body: b})
	}
	for i := range 4 {
		calls = append(calls, call{kind: "wrong token", token: key, body: progress(fmt.Sprintf("upl_tok%d", i), 5)})
	}
	type answer struct {
		code int
		body []byte
	}
	answers := make([]answer, len(calls))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw, _ := json.Marshal(c.body)
			req, _ := http.NewRequest("POST", s.BaseURL+"/v1/events", bytes.NewReader(raw))
			req.Header.Set("Authorization", "Bearer "+c.token)
			req.Header.Set("Content-Type", "application/json")
			if c.traceID != "" {
				req.Header.Set("traceparent", "00-"+c.traceID+"-00f067aa0ba902b7-01")
			}
			<-start
			resp, err := s.HTTP.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			answers[i] = answer{resp.StatusCode, b}
		}()
	}
	close(start)
	wg.Wait()

	keyedIDs := map[string]int{}
	keyedData := map[float64]int{}
	originals := 0
	for i, c := range calls {
		a := answers[i]
		var out struct {
			Event struct {
				ID, TraceID string
				Data        struct {
					UploadID   string
					Percentage float64
				}
			}
			Duplicate bool
		}
		_ = json.Unmarshal(a.body, &out)
		switch c.kind {
		case "new":
			up := c.body["data"].(map[string]any)["uploadId"]
			if a.code != 200 || out.Event.Data.UploadID != up || out.Event.TraceID != c.traceID || out.Duplicate {
				t.Errorf("call %d (%s): %d %s; want 200 with its own event (%s) in trace %s", i, c.kind, a.code, a.body, up, c.traceID)
				continue
			}
			s.MustDo(200, "GET", "/v1/events/"+out.Event.ID, key, nil, nil)
		case "invalid":
			if a.code != 400 || !strings.Contains(string(a.body), "data.percentage") {
				t.Errorf("call %d (%s): %d %s; want 400 naming data.percentage", i, c.kind, a.code, a.body)
			}
		case "keyed":
			if a.code != 200 {
				t.Errorf("call %d (%s): %d %s", i, c.kind, a.code, a.body)
				continue
			}
			keyedIDs[out.Event.ID]++
			keyedData[out.Event.Data.Percentage]++
			if !out.Duplicate {
				originals++
			}
		case "wrong token":
			if a.code != 401 || !strings.Contains(string(a.body), "PRODUCER_TOKEN") {
				t.Errorf("call %d (%s): %d %s; want 401 naming PRODUCER_TOKEN", i, c.kind, a.code, a.body)
			}
		}
	}
	if len(keyedIDs) != 1 || originals != 1 {
		t.Errorf("8 repeats of one key: events %v, %d not duplicates; want one event, one original", keyedIDs, originals)
	}
	if len(keyedData) != 1 {
		t.Errorf("8 repeats of one key answered with data.percentage %v, want every one the stored event's", keyedData)
	}
	var list struct {
		Events []struct{ ID string } `json:"events"`
	}
	s.MustDo(200, "GET", "/v1/events?pageSize=100", key, nil, &list)
	if len(list.Events) != 41 {
		t.Errorf("the account lists %d events, want 41 (40 new, one keyed)", len(list.Events))
	}
}
