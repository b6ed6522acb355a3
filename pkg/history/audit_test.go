package history

import (
	"context"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/ids"
)

func TestAuditEntriesArchiveOnceListNewestFirstAndErase(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	var es []AuditEntry
	for i := range 5 {
		at := now.Add(-time.Duration(5-i) * time.Hour)
		acct, res := acctA, "ep_A"
		if i == 4 {
			acct = acctB
		}
		if i%2 == 1 {
			res = "ep_B"
		}
		es = append(es, AuditEntry{ID: ids.New("aud_", at), AccountID: acct, Time: at, ActorType: "api_key",
			ActorKeyID: "key_x", ActorPrefix: "vsk_abcdefgh", Action: "endpoint.update", Resource: res, Summary: "url changed"})
	}
	old := now.Add(-40 * day)
	es = append(es, AuditEntry{ID: ids.New("aud_", old), AccountID: acctA, Time: old, ActorType: "admin", Action: "account.create", Resource: acctA})
	if n, err := s.ArchiveAudit(ctx, es); err != nil || n != 5 {
		t.Fatalf("ArchiveAudit = %d, %v; want 5 (the expired one skipped)", n, err)
	}
	if n, err := s.ArchiveAudit(ctx, es); err != nil || n != 0 {
		t.Fatalf("ArchiveAudit again = %d, %v; want 0", n, err)
	}
	got, err := s.ListAudit(ctx, acctA, AuditQuery{})
	if err != nil || len(got) != 4 {
		t.Fatalf("ListAudit = %d entries, %v; want 4", len(got), err)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID >= got[i-1].ID {
			t.Fatalf("not newest first: %v", got)
		}
	}
	if got[0] != es[3] {
		t.Fatalf("read back %+v, wrote %+v", got[0], es[3])
	}
	page, _ := s.ListAudit(ctx, acctA, AuditQuery{Before: got[1].ID, Resource: "ep_A", Since: now.Add(-10 * time.Hour)})
	if len(page) != 1 || page[0].ID != es[0].ID {
		t.Fatalf("filtered page = %+v", page)
	}
	if err := s.Erase(ctx, acctA); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM audit_log`); n != 1 {
		t.Fatalf("%d audit rows after erasing A, want B's 1", n)
	}
}
