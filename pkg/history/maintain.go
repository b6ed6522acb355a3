package history

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// partitioned are the daily-partitioned tables and their partition keys.
var partitioned = []string{"events", "deliveries", "attempts", "delivery_rollups", "audit_log"}

const day = 24 * time.Hour

func dayOf(t time.Time) time.Time { return t.UTC().Truncate(day) }

func partitionName(table string, d time.Time) string {
	return table + "_p" + d.Format("20060102")
}

// EnsurePartitions creates the missing daily partitions of every table from
// the first day still within Retention to DaysAhead days after now's. Safe to
// run from every pod at once.
func (s *Store) EnsurePartitions(ctx context.Context, now time.Time) error {
	first := dayOf(now.Add(-s.cfg.Retention))
	last := dayOf(now).Add(time.Duration(s.cfg.DaysAhead) * day)
	have, err := s.partitionDays(ctx)
	if err != nil {
		return err
	}
	var missing []time.Time
	for d := first; !d.After(last); d = d.Add(day) {
		if !have[d] {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(partitionLockID)); err != nil {
			return err
		}
		for _, d := range missing {
			for _, table := range partitioned {
				sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
					partitionName(table, d), table, d.Format(time.RFC3339), d.Add(day).Format(time.RFC3339))
				if _, err := tx.Exec(ctx, sql); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return wrapErr("create partitions", err)
	}
	s.log.Info("history: partitions created", "days", len(missing), "first", missing[0].Format(time.DateOnly), "last", missing[len(missing)-1].Format(time.DateOnly))
	return nil
}

// partitionDays lists the days that have a partition in every table.
func (s *Store) partitionDays(ctx context.Context) (map[time.Time]bool, error) {
	return partitionDaysOf(ctx, s.pool)
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

func partitionDaysOf(ctx context.Context, q querier) (map[time.Time]bool, error) {
	rows, err := q.Query(ctx, `
		SELECT p.relname, c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = ANY($1) AND p.relnamespace = c.relnamespace
		  AND p.relnamespace = to_regnamespace(current_schema())::oid`, partitioned)
	if err != nil {
		return nil, wrapErr("list partitions", err)
	}
	defer rows.Close()
	count := map[time.Time]int{}
	for rows.Next() {
		var parent, child string
		if err := rows.Scan(&parent, &child); err != nil {
			return nil, err
		}
		d, err := time.Parse("20060102", strings.TrimPrefix(child, parent+"_p"))
		if err != nil {
			continue // not one of ours
		}
		count[d]++
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("list partitions", err)
	}
	out := make(map[time.Time]bool, len(count))
	for d, n := range count {
		if n == len(partitioned) {
			out[d] = true
		}
	}
	return out, nil
}

// DropExpired drops the days that ended more than Retention before now, in
// every table, and returns them. Rows of younger days are never touched.
func (s *Store) DropExpired(ctx context.Context, now time.Time) ([]time.Time, error) {
	cutoff := now.Add(-s.cfg.Retention)
	have, err := s.allPartitionDays(ctx)
	if err != nil {
		return nil, err
	}
	var old []time.Time
	for d := range have {
		if !d.Add(day).After(cutoff) {
			old = append(old, d)
		}
	}
	if len(old) == 0 {
		return nil, nil
	}
	sort.Slice(old, func(i, j int) bool { return old[i].Before(old[j]) })
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(partitionLockID)); err != nil {
			return err
		}
		for _, d := range old {
			for _, table := range partitioned {
				if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+partitionName(table, d)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr("drop partitions", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM erased_accounts WHERE erased_at < $1`, cutoff); err != nil {
		return old, wrapErr("prune erased accounts", err)
	}
	s.log.Info("history: expired days dropped", "days", len(old), "last", old[len(old)-1].Format(time.DateOnly))
	return old, nil
}

// allPartitionDays lists days that have a partition in any table.
func (s *Store) allPartitionDays(ctx context.Context) (map[time.Time]bool, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT p.relname, c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = ANY($1) AND p.relnamespace = to_regnamespace(current_schema())::oid`, partitioned)
	if err != nil {
		return nil, wrapErr("list partitions", err)
	}
	defer rows.Close()
	out := map[time.Time]bool{}
	for rows.Next() {
		var parent, child string
		if err := rows.Scan(&parent, &child); err != nil {
			return nil, err
		}
		if d, err := time.Parse("20060102", strings.TrimPrefix(child, parent+"_p")); err == nil {
			out[d] = true
		}
	}
	return out, wrapErr("list partitions", rows.Err())
}

// ExpiredReason is the LastError of a parked delivery ExpireParked ended.
const ExpiredReason = "parked longer than PARKED_RETENTION while its endpoint was disabled"

// ExpireParked ends as failed (LastError ExpiredReason) every parked
// delivery parked before olderThan, in batches, and returns how many. Its
// Version is kept, so a copy restored to Redis meanwhile (its endpoint was
// re-enabled) still wins when archived again.
func (s *Store) ExpireParked(ctx context.Context, olderThan time.Time) (int, error) {
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, `
			UPDATE deliveries d SET status = 'failed', last_error = $2, update_time = $3
			FROM (SELECT t, id FROM deliveries WHERE status = 'parked' AND update_time < $1 LIMIT 5000) p
			WHERE d.t = p.t AND d.id = p.id AND d.status = 'parked'`,
			olderThan, ExpiredReason, s.cfg.Now().UTC())
		if err != nil {
			return total, wrapErr("expire parked", err)
		}
		n := int(tag.RowsAffected())
		total += n
		if n < 5000 {
			return total, nil
		}
	}
}

// RunMaintenance runs the maintenance loops every interval until ctx ends:
// partitions ahead, retention, parked expiry. Each is small, named, and
// logged when it fails; a failure never stops the others or the next round.
func (s *Store) RunMaintenance(ctx context.Context, every time.Duration) error {
	tasks := []struct {
		name string
		run  func(context.Context, time.Time) error
	}{
		{"ensure-partitions", s.EnsurePartitions},
		{"drop-expired", func(ctx context.Context, now time.Time) error { _, err := s.DropExpired(ctx, now); return err }},
		{"expire-parked", func(ctx context.Context, now time.Time) error {
			if s.cfg.ParkedRetention <= 0 {
				return nil
			}
			n, err := s.ExpireParked(ctx, now.Add(-s.cfg.ParkedRetention))
			if n > 0 {
				s.log.Info("history: parked deliveries expired", "count", n)
			}
			return err
		}},
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, task := range tasks {
			tctx, cancel := context.WithTimeout(ctx, every)
			if err := task.run(tctx, s.cfg.Now()); err != nil && ctx.Err() == nil {
				s.log.Warn("history: maintenance failed", "task", task.name, "err", err)
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Erase deletes every record of an account from history (events,
// deliveries, attempts, rollups, audit entries, quarantined rows), one day
// at a time so no transaction grows with the account. It first records the
// account in erased_accounts and waits for every Archive already past its
// check of that table (the partition lock's barrier), so a move from Redis
// in flight meanwhile cannot bring the account's records back: Archive and
// ArchiveAudit skip erased accounts from then on. Idempotent.
func (s *Store) Erase(ctx context.Context, accountID string) error {
	acct, ok := idBytes(prefixAccount, accountID)
	if ok {
		if _, err := s.pool.Exec(ctx, `INSERT INTO erased_accounts (account_id) VALUES ($1) ON CONFLICT (account_id) DO NOTHING`, acct); err != nil {
			return wrapErr("erase account", err)
		}
		// The barrier: an Archive holds the partition lock shared from
		// before its check of erased_accounts to its commit.
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(partitionLockID))
			return err
		})
		if err != nil {
			return wrapErr("erase account", err)
		}
		days, err := s.allPartitionDays(ctx)
		if err != nil {
			return err
		}
		for d := range days {
			err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				for _, q := range []string{
					fmt.Sprintf(`DELETE FROM %s a USING %s d WHERE d.account_id = $1 AND a.t = d.t AND a.delivery_id = d.id`, partitionName("attempts", d), partitionName("deliveries", d)),
					fmt.Sprintf(`DELETE FROM %s WHERE account_id = $1`, partitionName("deliveries", d)),
					fmt.Sprintf(`DELETE FROM %s WHERE account_id = $1`, partitionName("events", d)),
					fmt.Sprintf(`DELETE FROM %s WHERE account_id = $1`, partitionName("delivery_rollups", d)),
				} {
					if _, err := tx.Exec(ctx, q, acct); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil && !strings.Contains(err.Error(), "does not exist") {
				return wrapErr("erase account", err)
			}
		}
	}
	if ok {
		if err := s.eraseAudit(ctx, acct); err != nil {
			return err
		}
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM quarantine WHERE account_id = $1`, accountID)
	return wrapErr("erase account", err)
}
