package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/pgtest"
)

type auditEntry struct {
	ID    string `json:"id"`
	Time  string `json:"time"`
	Actor struct {
		Type      string `json:"type"`
		KeyID     string `json:"keyId"`
		KeyPrefix string `json:"keyPrefix"`
	} `json:"actor"`
	Action   string `json:"action"`
	Resource string `json:"resource"`
	Summary  string `json:"summary"`
}

// auditLog reads every page of the caller's audit log (newest first) and
// the raw bodies it got.
func (s *Suite) auditLog(key, query string) ([]auditEntry, string) {
	s.t.Helper()
	var all []auditEntry
	var raw strings.Builder
	token := ""
	for range 100 {
		q := query
		if token != "" {
			q += "&pageToken=" + url.QueryEscape(token)
		}
		var page struct {
			Entries       []auditEntry `json:"entries"`
			NextPageToken string       `json:"nextPageToken"`
		}
		raw.Write(s.MustDo(200, "GET", "/v1/audit-log?pageSize=3&"+q, key, nil, &page))
		all = append(all, page.Entries...)
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	return all, raw.String()
}

func firstKey(s *Suite, key string) (id, prefix string) {
	var keys struct {
		APIKeys []struct{ ID, Prefix string } `json:"apiKeys"`
	}
	s.MustDo(200, "GET", "/v1/api-keys", key, nil, &keys)
	return keys.APIKeys[0].ID, keys.APIKeys[0].Prefix
}

func TestAuditLogRecordsEveryChangeWithItsActor(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	acct, key := s.NewAccount("audited")
	keyID, prefix := firstKey(s, key)
	rc := newReceiver()
	defer rc.Close()

	b := make([]byte, 32)
	_, _ = rand.Read(b)
	supplied := "whsec_" + base64.StdEncoding.EncodeToString(b)
	var ep struct {
		Endpoint Endpoint `json:"endpoint"`
		Secret   string   `json:"secret"`
	}
	s.MustDo(200, "POST", "/v1/endpoints", key, map[string]any{"url": rc.URL + "/a", "eventTypes": []string{"upload.completed"},
		"secret": supplied, "headers": map[string]string{"Authorization": "Bearer receiver-credential-xyz"}}, &ep)
	id := ep.Endpoint.ID
	s.MustDo(200, "PATCH", "/v1/endpoints/"+id, key, map[string]any{"url": rc.URL + "/b"}, nil)
	s.MustDo(200, "POST", "/v1/endpoints/"+id+":disable", key, nil, nil)
	s.MustDo(200, "POST", "/v1/endpoints/"+id+":enable", key, nil, nil)
	var rot struct{ Secret string }
	s.MustDo(200, "POST", "/v1/endpoints/"+id+":rotateSecret", key, nil, &rot)
	var nk struct {
		APIKey struct{ ID, Prefix string } `json:"apiKey"`
		Key    string                      `json:"key"`
	}
	s.MustDo(200, "POST", "/v1/api-keys", key, map[string]any{"name": "ci"}, &nk)
	s.MustDo(200, "DELETE", "/v1/api-keys/"+nk.APIKey.ID, key, nil, nil)
	s.MustDo(200, "PATCH", "/v1/settings", key, map[string]any{"notificationEmail": "ops@example.com"}, nil)

	c, ctx := s.Ingestion()
	publish(t, c, ctx, acct, "upload.completed", map[string]any{"uploadId": "upl_a", "size": 1, "format": "wav"}, "")
	var dlvID string
	eventually(t, 10*time.Second, "a delivery", func() bool {
		ds := s.deliveries(key, "")
		if len(ds) == 1 && ds[0].Status == "DELIVERY_STATUS_SUCCEEDED" {
			dlvID = ds[0].ID
		}
		return dlvID != ""
	})
	s.MustDo(200, "POST", "/v1/deliveries/"+dlvID+":retry", key, nil, nil)
	s.MustDo(200, "POST", "/v1/endpoints/"+id+":replay", key, map[string]any{"since": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}, nil)

	// The auto-disable: a receiver answering 410 Gone.
	gone := newReceiver()
	defer gone.Close()
	gone.Respond = func(int, *http.Request) int { return http.StatusGone }
	g, _ := s.NewEndpoint(key, gone.URL, "upload.completed")
	publish(t, c, ctx, acct, "upload.completed", map[string]any{"uploadId": "upl_b", "size": 1, "format": "wav"}, "")
	eventually(t, 15*time.Second, "the 410 endpoint disabled by the system", func() bool {
		var got struct{ Endpoint Endpoint }
		s.MustDo(200, "GET", "/v1/endpoints/"+g.ID, key, nil, &got)
		return got.Endpoint.Status == "ENDPOINT_STATUS_DISABLED"
	})
	s.MustDo(200, "DELETE", "/v1/endpoints/"+id, key, nil, nil)

	type want struct{ action, resource, actor string }
	wants := []want{
		{"account.create", acct, "admin"},
		{"endpoint.create", id, "api_key"},
		{"endpoint.update", id, "api_key"},
		{"endpoint.disable", id, "api_key"},
		{"endpoint.enable", id, "api_key"},
		{"endpoint.rotate_secret", id, "api_key"},
		{"api_key.create", nk.APIKey.ID, "api_key"},
		{"api_key.revoke", nk.APIKey.ID, "api_key"},
		{"settings.update", acct, "api_key"},
		{"delivery.retry", dlvID, "api_key"},
		{"endpoint.replay", id, "api_key"},
		{"endpoint.create", g.ID, "api_key"},
		{"endpoint.disable", g.ID, "system"},
		{"endpoint.delete", id, "api_key"},
	}
	var entries []auditEntry
	var raw string
	eventually(t, 15*time.Second, "every change in the audit log", func() bool {
		entries, raw = s.auditLog(key, "")
		return len(entries) >= len(wants)
	})
	if len(entries) != len(wants) {
		t.Fatalf("%d entries, want %d: %+v", len(entries), len(wants), entries)
	}
	for i, w := range wants {
		e := entries[len(entries)-1-i] // newest first
		if e.Action != w.action || e.Resource != w.resource || e.Actor.Type != w.actor {
			t.Errorf("entry %d = %s %s by %s (%s), want %s %s by %s", i, e.Action, e.Resource, e.Actor.Type, e.Summary, w.action, w.resource, w.actor)
		}
		if w.actor == "api_key" && (e.Actor.KeyID != keyID || e.Actor.KeyPrefix != prefix) {
			t.Errorf("entry %d actor = %+v, want key %s %s", i, e.Actor, keyID, prefix)
		}
		if e.Time == "" || e.ID == "" {
			t.Errorf("entry %d lacks time or id: %+v", i, e)
		}
	}
	for _, secret := range []string{supplied, rot.Secret, key, nk.Key, "receiver-credential-xyz"} {
		if strings.Contains(raw, secret) {
			t.Errorf("the audit log holds a secret or key: %q", secret)
		}
	}
	// Everything moved to history within seconds, and reads the same.
	eventually(t, 15*time.Second, "audit entries moved to PostgreSQL", func() bool {
		n, err := s.Redis.Client.HLen(t.Context(), "wh:{a:"+acct+"}:audit").Result()
		// delivery's (the retry's and the replay's) wait in its shards' slots
		inShards, serr := auditlog.ShardLive(t.Context(), s.Redis.Client, acct)
		return err == nil && n == 0 && serr == nil && len(inShards) == 0
	})
	again, _ := s.auditLog(key, "")
	if len(again) != len(entries) {
		t.Fatalf("after the move %d entries, before %d", len(again), len(entries))
	}
	// Filters.
	byRes, _ := s.auditLog(key, "resource="+g.ID)
	if len(byRes) != 2 {
		t.Errorf("resource filter: %+v", byRes)
	}
	mid := entries[len(entries)/2].Time
	newer, _ := s.auditLog(key, "since="+url.QueryEscape(mid))
	older, _ := s.auditLog(key, "until="+url.QueryEscape(mid))
	if len(newer)+len(older) != len(entries) || len(newer) == 0 || len(older) == 0 {
		t.Errorf("since/until split %d entries into %d and %d", len(entries), len(newer), len(older))
	}

	// Another account sees none of it.
	_, other := s.NewAccount("other")
	theirs, _ := s.auditLog(other, "")
	if len(theirs) != 1 || theirs[0].Action != "account.create" {
		t.Errorf("another account's audit log: %+v", theirs)
	}
	if foreign, _ := s.auditLog(other, "resource="+g.ID); len(foreign) != 0 {
		t.Errorf("another account's entries by resource: %+v", foreign)
	}
	if code, _ := s.Do("GET", "/v1/endpoints/"+g.ID, other, nil, nil); code != 404 {
		t.Errorf("another account's endpoint: %d", code)
	}
}

func TestAuditLogSurvivesPostgreSQLDown(t *testing.T) {
	pgs := pgtest.StartServer(t)
	s := startSuite(t, SuiteOptions{Env: map[string]string{"DATABASE_URL": pgs.NewDatabase(t)}})
	acct, key := s.NewAccount("pgdown")
	eventually(t, 15*time.Second, "the account's entry in history", func() bool {
		n, err := s.Redis.Client.HLen(t.Context(), "wh:{a:"+acct+"}:audit").Result()
		return err == nil && n == 0
	})
	pgtest.Kill(t, pgs)
	// Changes go on; their entries wait in Redis.
	ep, _ := s.NewEndpoint(key, "http://127.0.0.1:9/x", "upload.completed")
	var nk struct {
		APIKey struct{ ID string } `json:"apiKey"`
	}
	s.MustDo(200, "POST", "/v1/api-keys", key, map[string]any{"name": "second"}, &nk)
	s.MustDo(200, "DELETE", "/v1/api-keys/"+nk.APIKey.ID, key, nil, nil)
	if n, _ := s.Redis.Client.HLen(t.Context(), "wh:{a:"+acct+"}:audit").Result(); n != 3 {
		t.Fatalf("%d entries waiting in Redis, want 3", n)
	}
	if code, body := s.Do("GET", "/v1/audit-log", key, nil, nil); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "history store unreachable") {
		t.Errorf("audit log with PostgreSQL down: %d %s", code, body)
	}
	if err := pgs.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the entries in history once PostgreSQL is back", func() bool {
		n, err := s.Redis.Client.HLen(t.Context(), "wh:{a:"+acct+"}:audit").Result()
		return err == nil && n == 0
	})
	entries, _ := s.auditLog(key, "")
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+" "+e.Resource)
	}
	want := []string{"api_key.revoke " + nk.APIKey.ID, "api_key.create " + nk.APIKey.ID, "endpoint.create " + ep.ID, "account.create " + acct}
	if b, _ := json.Marshal(got); string(b) != func() string { b, _ := json.Marshal(want); return string(b) }() {
		t.Errorf("audit log after the outage = %v, want %v", got, want)
	}
}
