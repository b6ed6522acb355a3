package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestRESTPublishesKeepTheirOwnTraces: single POST /v1/events made at once
// (which the gateway gathers into one PublishEach call) each continue their
// request's trace (its traceparent header): the gateway's server span, under
// it ingestion's PublishEvent server span with ingest.validate, and the
// delivery's attempt, all in that trace and no other request's.
func TestRESTPublishesKeepTheirOwnTraces(t *testing.T) {
	col := newOTLPCollector(t)
	s := startSuite(t, SuiteOptions{Env: otelEnv(col.URL)})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("rest-traces")
	s.NewEndpoint(key, rc.URL, "transcription.completed")

	const n = 16
	const parent = "00f067aa0ba902b7"
	traceIDs := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		traceIDs[i] = fmt.Sprintf("%032x", 0x7e57000+i)
		wg.Go(func() {
			raw, _ := json.Marshal(map[string]any{"accountId": acct, "type": "transcription.completed", "data": completed(fmt.Sprintf("upl_rt%d", i))})
			req, _ := http.NewRequest("POST", s.BaseURL+"/v1/events", bytes.NewReader(raw))
			req.Header.Set("Authorization", "Bearer "+producerToken)
			req.Header.Set("traceparent", "00-"+traceIDs[i]+"-"+parent+"-01")
			<-start
			resp, err := s.HTTP.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("publish %d: %d", i, resp.StatusCode)
			}
		})
	}
	close(start)
	wg.Wait()

	for i, id := range traceIDs {
		var all []span
		// Spans arrive as each process exports them, in any order: the
		// gateway's and ingestion's end after the attempt may have.
		eventually(t, 20*time.Second, fmt.Sprintf("trace %d's gateway, PublishEvent and attempt spans", i), func() bool {
			all = col.Trace(id)
			return count(all, func(s span) bool { return s.Name == "webhook.attempt" }) >= 1 &&
				count(all, func(s span) bool { return s.Service == "gateway" && s.Kind == "server" }) >= 1 &&
				count(all, func(s span) bool { return s.Service == "ingestion" && s.Kind == "server" }) >= 1
		})
		byID := map[string]span{}
		for _, sp := range all {
			byID[sp.SpanID] = sp
		}
		var gw, pub span
		for _, sp := range all {
			switch {
			case sp.Service == "gateway" && sp.Kind == "server" && sp.Name == "POST /v1/events":
				gw = sp
			case sp.Service == "ingestion" && sp.Kind == "server" && sp.Name == "voxscriber.webhooks.ingestion.v1.IngestionService/PublishEvent":
				pub = sp
			}
		}
		if gw.SpanID == "" || gw.ParentID != parent {
			t.Errorf("trace %d: gateway span %+v, want POST /v1/events under the request's parent %s; spans: %s", i, gw, parent, describe(all))
			continue
		}
		if pub.SpanID == "" || pub.ParentID != gw.SpanID {
			t.Errorf("trace %d: ingestion PublishEvent span %+v, want it under the gateway's span; spans: %s", i, pub, describe(all))
			continue
		}
		validated := false
		for _, sp := range all {
			if sp.Name == "ingest.validate" && sp.ParentID == pub.SpanID {
				validated = true
			}
			if _, ok := byID[sp.ParentID]; !ok && sp.SpanID != gw.SpanID {
				t.Errorf("trace %d: span %s/%s has a parent outside the trace", i, sp.Service, sp.Name)
			}
		}
		if !validated {
			t.Errorf("trace %d: no ingest.validate under ingestion's PublishEvent span; spans: %s", i, describe(all))
		}
	}
}
