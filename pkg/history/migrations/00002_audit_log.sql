-- The account audit log (issue #16): who changed what, moved here from
-- Redis (wh:{a:<acct>}:audit) by the registry's mover. Partitioned by day
-- on t, the entry's time (the time part of its id), like the other tables:
-- EnsurePartitions makes its days, DropExpired drops them after
-- HISTORY_RETENTION. Expand-only: a new table, nothing else changes.

-- +goose Up
CREATE TABLE audit_log (
    t            timestamptz NOT NULL,
    id           text        COLLATE "C" NOT NULL,
    account_id   uuid        NOT NULL,
    actor_type   text        NOT NULL,
    actor_key_id text,
    actor_prefix text,
    action       text        NOT NULL,
    resource     text        NOT NULL,
    summary      text,
    PRIMARY KEY (t, id)
) PARTITION BY RANGE (t);
CREATE INDEX audit_log_account ON audit_log (account_id, id);
CREATE INDEX audit_log_account_resource ON audit_log (account_id, resource, id);

-- +goose Down
DROP TABLE audit_log;
