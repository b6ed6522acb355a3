package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
)

// ingestionPeer is a gRPC ingestion that answers publishes with an event
// naming the request's type and credential, with its data (left out when
// PublishEach is asked to), and refuses the type "bad" (InvalidArgument).
// gathered false plays a build before PublishEach.
type ingestionPeer struct {
	ingestionv1.UnimplementedIngestionServiceServer
	ingestionv1.UnimplementedGatewayPublishServiceServer
	mu          sync.Mutex
	singles     int
	calls       int      // PublishEach calls
	credentials []string // per PublishEach call
}

func (p *ingestionPeer) answer(ctx context.Context, r *ingestionv1.PublishEventRequest) (*ingestionv1.PublishEventResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get(authn.GatewayMetadata)) == 0 {
		return nil, status.Error(codes.Internal, "no gateway metadata")
	}
	if r.GetType() == "bad" {
		return nil, status.Error(codes.InvalidArgument, "type: bad is no event type")
	}
	return &ingestionv1.PublishEventResponse{Event: &ingestionv1.Event{
		Id: "evt_" + r.GetIdempotencyKey(), Type: r.GetType(), AccountId: strings.Join(md.Get("authorization"), ","), Data: r.GetData(),
	}}, nil
}

func (p *ingestionPeer) PublishEvent(ctx context.Context, r *ingestionv1.PublishEventRequest) (*ingestionv1.PublishEventResponse, error) {
	p.mu.Lock()
	p.singles++
	p.mu.Unlock()
	return p.answer(ctx, r)
}

func (p *ingestionPeer) PublishEach(ctx context.Context, r *ingestionv1.PublishEachRequest) (*ingestionv1.PublishEachResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	p.mu.Lock()
	p.calls++
	p.credentials = append(p.credentials, strings.Join(md.Get("authorization"), ","))
	p.mu.Unlock()
	out := &ingestionv1.PublishEachResponse{}
	for _, it := range r.GetItems() {
		resp, err := p.answer(ctx, it.GetRequest())
		st := status.Convert(err).Proto()
		omit := resp != nil && r.GetOmitEchoedData()
		if omit {
			resp.Event.Data = nil
		}
		out.Results = append(out.Results, &ingestionv1.PublishEachResult{Response: resp, Code: st.GetCode(), Message: st.GetMessage(), DataOmitted: omit})
	}
	return out, nil
}

// serveIngestion serves p over loopback, with PublishEach when gathered.
func serveIngestion(t *testing.T, p *ingestionPeer, gathered bool) *grpc.ClientConn {
	t.Helper()
	return serveGRPC(t, func(srv *grpc.Server) {
		ingestionv1.RegisterIngestionServiceServer(srv, p)
		if gathered {
			ingestionv1.RegisterGatewayPublishServiceServer(srv, p)
		}
	})
}

// publishAtOnce makes n POST /v1/events at once, request i with credential
// creds[i%len(creds)], idempotency key i, type typ(i) and data.uploadId
// upl_<i>; it returns each
// answer's status and body.
func publishAtOnce(t *testing.T, url string, n int, creds []string, typ func(int) string) ([]int, []string) {
	codes := make([]int, n)
	bodies := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			raw, _ := json.Marshal(map[string]any{"type": typ(i), "idempotencyKey": fmt.Sprint(i), "data": map[string]any{"uploadId": fmt.Sprint("upl_", i)}})
			req, _ := http.NewRequest("POST", url+"/v1/events", bytes.NewReader(raw))
			req.Header.Set("Authorization", creds[i%len(creds)])
			<-start
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			codes[i], bodies[i] = resp.StatusCode, string(b)
		})
	}
	close(start)
	wg.Wait()
	return codes, bodies
}

// TestGatheredPublishesKeepTheirOwnCredentialAndAnswer: POST /v1/events
// made at once go to ingestion in PublishEach calls of one credential
// each, and every request gets its own event or its own error; against an
// ingestion without PublishEach (a rolling upgrade) each goes as its own
// PublishEvent and gets the same answers.
func TestGatheredPublishesKeepTheirOwnCredentialAndAnswer(t *testing.T) {
	for _, gathered := range []bool{true, false} {
		t.Run(fmt.Sprintf("PublishEach served %v", gathered), func(t *testing.T) {
			peer := &ingestionPeer{}
			reg, _ := backend(t)
			del, _ := backend(t)
			h, err := New(context.Background(), Backends{Registry: reg, Ingestion: serveIngestion(t, peer, gathered), Delivery: del})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			const n = 60
			creds := []string{"Bearer one", "Bearer two", "Bearer three"}
			typ := func(i int) string {
				if i%5 == 0 {
					return "bad"
				}
				return "upload.completed"
			}
			codes, bodies := publishAtOnce(t, srv.URL, n, creds, typ)
			for i := range n {
				var out struct {
					Event struct {
						ID, Type, AccountID string
						Data                struct{ UploadID string }
					}
				}
				_ = json.Unmarshal([]byte(bodies[i]), &out)
				switch {
				case typ(i) == "bad":
					if codes[i] != 400 || !strings.Contains(bodies[i], "bad is no event type") {
						t.Errorf("request %d: %d %s, want 400 with its own error", i, codes[i], bodies[i])
					}
				case codes[i] != 200 || out.Event.ID != fmt.Sprintf("evt_%d", i) || out.Event.AccountID != creds[i%len(creds)] ||
					out.Event.Data.UploadID != fmt.Sprint("upl_", i):
					t.Errorf("request %d: %d %s, want its own event and data under %q", i, codes[i], bodies[i], creds[i%len(creds)])
				}
			}
			peer.mu.Lock()
			defer peer.mu.Unlock()
			if !gathered {
				if peer.singles != n {
					t.Errorf("%d PublishEvent calls for %d requests to an ingestion without PublishEach", peer.singles, n)
				}
				return
			}
			if peer.singles != 0 || peer.calls == 0 || peer.calls >= n {
				t.Errorf("%d PublishEvent and %d PublishEach calls for %d requests, want only PublishEach, fewer than requests", peer.singles, peer.calls, n)
			}
			for _, c := range peer.credentials {
				if strings.Contains(c, ",") || c == "" {
					t.Errorf("a PublishEach call carried credentials %q, want exactly one", c)
				}
			}
		})
	}
}
