package history

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditEntry is one row of the account audit log (issue #16; its live tier
// and format are pkg/auditlog's). ID is time-ordered (aud_ + 26
// characters), so ordering by id is ordering by time.
type AuditEntry struct {
	ID          string
	AccountID   string
	Time        time.Time
	ActorType   string
	ActorKeyID  string
	ActorPrefix string
	Action      string
	Resource    string
	Summary     string
}

// AuditQuery filters ListAudit: Since <= Time < Until (zero = unbounded),
// Resource (exact id, "" = any), Before (an entry id: strictly older
// entries only, the page cursor), Limit (default and at most 1000).
type AuditQuery struct {
	Since, Until time.Time
	Resource     string
	Before       string
	Limit        int
}

// ArchiveAudit writes entries in one transaction (an upsert: an entry
// written before is skipped) and returns how many it wrote now. Entries
// whose day is past retention are not written (their day is dropped, or
// about to be) but count as held: the caller may delete them from Redis.
// Everything given is durable (or expired) once it returns nil.
func (s *Store) ArchiveAudit(ctx context.Context, entries []AuditEntry) (int, error) {
	cutoff := dayOf(s.cfg.Now().Add(-s.cfg.Retention))
	written := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		written = 0
		// Shared with Erase's barrier, as in Archive: an erased account's
		// entries are skipped (they count as held).
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared($1)", int64(partitionLockID)); err != nil {
			return err
		}
		var accts [][16]byte
		for _, e := range entries {
			if a, ok := idBytes(prefixAccount, e.AccountID); ok {
				accts = append(accts, a)
			}
		}
		erased, err := erasedAccounts(ctx, tx, accts)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, e := range entries {
			acct, ok := idBytes(prefixAccount, e.AccountID)
			if !ok || e.Time.Before(cutoff) || erased[acct] {
				continue // not ours, expired or erased: nothing to keep
			}
			b.Queue(`INSERT INTO audit_log (t, id, account_id, actor_type, actor_key_id, actor_prefix, action, resource, summary)
				VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), $7, $8, NULLIF($9, ''))
				ON CONFLICT (t, id) DO NOTHING`,
				e.Time.UTC(), e.ID, acct, e.ActorType, e.ActorKeyID, e.ActorPrefix, e.Action, e.Resource, e.Summary)
		}
		if b.Len() == 0 {
			return nil
		}
		res := tx.SendBatch(ctx, b)
		for range b.Len() {
			tag, err := res.Exec()
			if err != nil {
				_ = res.Close()
				return err
			}
			written += int(tag.RowsAffected())
		}
		return res.Close()
	})
	if err != nil {
		return 0, wrapErr("archive audit entries", err)
	}
	return written, nil
}

// ListAudit returns up to q.Limit entries of an account, newest first.
func (s *Store) ListAudit(ctx context.Context, accountID string, q AuditQuery) ([]AuditEntry, error) {
	acct, ok := idBytes(prefixAccount, accountID)
	if !ok {
		return nil, nil
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 1000
	}
	conds := []string{"account_id = $1"}
	args := []any{acct}
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if !q.Since.IsZero() {
		add("t >= $%d", q.Since.UTC())
	}
	if !q.Until.IsZero() {
		add("t < $%d", q.Until.UTC())
	}
	if q.Resource != "" {
		add("resource = $%d", q.Resource)
	}
	if q.Before != "" {
		add("id < $%d", q.Before)
	}
	args = append(args, q.Limit)
	sql := fmt.Sprintf(`SELECT id, t, actor_type, coalesce(actor_key_id, ''), coalesce(actor_prefix, ''), action, resource, coalesce(summary, '')
		FROM audit_log WHERE %s ORDER BY id DESC LIMIT $%d`, strings.Join(conds, " AND "), len(args))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrapErr("list audit entries", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		e := AuditEntry{AccountID: accountID}
		if err := rows.Scan(&e.ID, &e.Time, &e.ActorType, &e.ActorKeyID, &e.ActorPrefix, &e.Action, &e.Resource, &e.Summary); err != nil {
			return nil, wrapErr("list audit entries", err)
		}
		e.Time = e.Time.UTC()
		out = append(out, e)
	}
	return out, wrapErr("list audit entries", rows.Err())
}

// eraseAudit deletes an account's audit entries (part of Erase).
func (s *Store) eraseAudit(ctx context.Context, acct [16]byte) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM audit_log WHERE account_id = $1`, acct)
	return wrapErr("erase audit entries", err)
}
