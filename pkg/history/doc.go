// Package history is the PostgreSQL tier of the suite (issue #12, "History
// leaves RAM"). Redis keeps what is live (the schedule; pending, in-flight
// and retrying deliveries with their events; idempotency keys; registry
// data; endpoint stats). This package keeps the rest: ended deliveries
// (succeeded, failed after the final attempt, canceled) with their attempts,
// events none of whose deliveries is live, and parked work (deliveries
// parked for longer than a few minutes while their endpoint is DISABLED).
//
// # Schema
//
// Tables events, deliveries and attempts are range-partitioned by day (UTC)
// on t, the time part of the event's id. A delivery id is derived from its
// event's and carries the event's time part, so an event, its deliveries and
// their attempts share one day, and a delivery keeps its partition through
// retries: archiving it again is an upsert. Primary keys are (t, id) and
// (t, delivery_id, number). Ids are stored as uuid (their 128 bits; the
// prefix is implied by the column). delivery_rollups is partitioned by day
// on minute. quarantine is a plain table. Parked deliveries are rows of
// deliveries with status 'parked' (two partial indexes serve them).
// Migrations are embedded (goose), applied by Open under an advisory lock,
// and expand/contract: they only add, so an older release keeps running on a
// newer schema during a rollout.
//
// Partitions exist from the first day within Retention to DaysAhead (≥ 2)
// days ahead (EnsurePartitions, at Open and in RunMaintenance). DropExpired
// drops a day once it ended more than Retention ago, in every table at
// once. CheckRetention (also run by Open) refuses a Retention shorter than
// ParkedRetention + the schedule's total + 1 day.
//
// # Archiving (the contract for the archiver)
//
// Archive(ctx, Batch) writes events, deliveries and their attempts in one
// transaction: COPY into temporary staging tables, then INSERT … SELECT …
// ON CONFLICT … DO UPDATE … WHERE stored.version < excluded.version for
// deliveries, DO NOTHING for attempts (keyed by number), a DeliveryCount
// raise only for events. The per-minute rollups are incremented from
// exactly the attempts inserted by this call, so archiving again never
// counts twice. A record whose day has no partition, or whose ids are not
// ours, is written whole to quarantine (metric history.quarantined_rows) and
// never fails its batch.
//
// The archiver:
//   - reads a batch of ended or parked deliveries (with their attempts and
//     Version) and the events whose deliveries are all ended or parked, from
//     Redis; fills Delivery.EventType and UploadID from the event;
//   - calls Archive; on error (apierr.ErrUnavailable when PostgreSQL is down)
//     leaves everything in Redis and retries later;
//   - on success deletes from Redis each record named in Result.Deliveries,
//     Result.Events and Result.Quarantined with a compare-and-delete on the
//     Version it archived (in Lua): a record that changed meanwhile stays.
//     A delivery with Archived.Newer set is not deleted: history holds
//     another copy of it (a higher version, updated earlier: its versions
//     forked), so the archiver renumbers the Redis copy above Newer and
//     archives it again, and history ends with what happened last.
//
// A crash at any step loses nothing (Redis is cleared only after the
// commit) and lists nothing twice (every write is an upsert keyed by id and
// day; the merged read path de-duplicates, below).
//
// Version must grow with every change of a delivery over its whole life,
// including round trips: a record restored from history into Redis (resume,
// replay, retry) continues from its stored Version, or its next archive
// would be refused as stale.
//
// # Parked work
//
// A delivery parked for longer than a few minutes is archived with status
// parked (UpdateTime = when it was parked) and leaves Redis. On re-enable,
// the resumer pages ResumeParked(endpoint, cursor, limit, restore) in
// publish order (event time, then id): in one transaction each page's rows
// are read locked, handed to restore, which brings each delivery to Redis
// (with its Event when Parked.Event is not nil: history held the event) and
// returns those it restored, and those are unparked (Unpark, with the
// versions taken). The lock keeps a newer copy's archive from landing
// between the read and the restore. A crash in between restores the same
// page again, which the Redis upsert by delivery id makes harmless.
// ExpireParked (in RunMaintenance, with ParkedRetention) ends parked
// deliveries older than PARKED_RETENTION as failed with ExpiredReason.
//
// # Reads and the merged read path
//
// GetEvent, GetEvents, ListEvents, GetDelivery (with attempts, oldest
// first), ListDeliveries, FindForReplay and Series are scoped to an account
// (another account's ids are NotFound). Every filter is served by an index
// (TestEveryFilterIsServedByAnIndex).
//
// Listings are ordered newest first by (time part of the id, id), which is
// the order of the ids themselves (their first 48 bits are the time). A
// Cursor is the id of the last record returned; the next page holds the
// records strictly before it. The merged read path over both tiers asks
// each tier for PageSize records before the same id, merges the two lists
// by id descending, keeps one copy of an id present in both tiers (the
// higher Version: Redis while it is live there), returns the first
// PageSize and the last one's id as its own cursor. Records moving between
// tiers keep their id, so the merged listing never skips nor repeats one:
// a record is in Redis, in both, or in history, never in neither.
// Since/Until filter the same time: Since <= time part < Until.
//
// # Failure
//
// When PostgreSQL is down or too slow every call returns an error wrapping
// apierr.ErrUnavailable whose message starts "history store unreachable";
// the pool reconnects by itself once it is back. Ping serves health.
// Services open the store with OpenLazy (lazy.go): PostgreSQL is never a
// start-up or readiness dependency, only a configuration error fails
// start-up; until the store opens, Lazy.Store answers Unavailable naming
// the last connection error.
//
// # Erasing an account
//
// Erase deletes an account's rows in every table, one day at a time. Stop
// archiving for the account first (or erase Redis first).
package history
