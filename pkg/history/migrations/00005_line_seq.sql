-- The place of an ordered delivery in its key's line (issue #12): a
-- delivery parked in history keeps its sequence number, so that when its
-- endpoint is enabled again it rejoins its line at that place, ahead of
-- the deliveries of its key that stayed in Redis. NULL for unordered
-- deliveries and for ordered ones that ended (they left their line).
-- Expand-only: a nullable column, no rewrite of existing rows.

-- +goose Up
ALTER TABLE deliveries ADD COLUMN line_seq bigint;

-- +goose Down
ALTER TABLE deliveries DROP COLUMN line_seq;
