-- Accounts being or recently erased (issue #16, erasure): Erase records the
-- account here before it deletes anything, and Archive / ArchiveAudit skip
-- records of these accounts, so a move from Redis that was in flight while
-- the account was erased cannot bring its records back. Only the account id
-- (no personal data) and when; rows older than HISTORY_RETENTION are pruned
-- with the expired days. Expand-only: a new table, nothing else changes.

-- +goose Up
CREATE TABLE erased_accounts (
    account_id uuid        PRIMARY KEY,
    erased_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE erased_accounts;
