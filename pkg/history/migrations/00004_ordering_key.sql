-- The ordering key of a delivery to an endpoint ordered by key (issue #15):
-- a delivery that leaves Redis (parked for long, or ended and later retried
-- or replayed) keeps it, so that when it comes back it joins its key's
-- line again instead of going unordered. NULL for unordered deliveries.
-- Expand-only: a nullable column, no rewrite of existing rows.

-- +goose Up
ALTER TABLE deliveries ADD COLUMN ordering_key text;

-- +goose Down
ALTER TABLE deliveries DROP COLUMN ordering_key;
