-- History tier, first schema. Every table is partitioned by day on t, the
-- time part of the event's id (a delivery's id carries its event's time part,
-- so an event, its deliveries and their attempts share one day and archiving a
-- record again is an upsert into the same partition). Daily partitions are
-- made by the Go code (EnsurePartitions), not by migrations; indexes declared
-- here apply to every partition.
--
-- Migrations are expand/contract: a migration only adds (tables, nullable
-- columns, indexes); a column or table is dropped only in a later release,
-- once no running version reads or writes it. Old and new pods run side by
-- side during a rollout.

-- +goose Up
CREATE TABLE events (
    t               timestamptz NOT NULL,
    create_time     timestamptz NOT NULL,
    id              uuid        NOT NULL,
    account_id      uuid        NOT NULL,
    trace_id        uuid,
    delivery_count  integer     NOT NULL DEFAULT 0,
    type            text        NOT NULL,
    upload_id       text,
    idempotency_key text,
    payload         bytea       NOT NULL,
    PRIMARY KEY (t, id)
) PARTITION BY RANGE (t);
CREATE INDEX events_account ON events (account_id, t, id);
CREATE INDEX events_account_type ON events (account_id, type, t, id);
CREATE INDEX events_account_upload ON events (account_id, upload_id, t, id) WHERE upload_id IS NOT NULL;

CREATE TABLE deliveries (
    t             timestamptz NOT NULL,
    create_time   timestamptz NOT NULL,
    update_time   timestamptz NOT NULL,
    first_attempt timestamptz,
    version       bigint      NOT NULL,
    id            uuid        NOT NULL,
    account_id    uuid        NOT NULL,
    endpoint_id   uuid        NOT NULL,
    event_id      uuid        NOT NULL,
    attempts      integer     NOT NULL DEFAULT 0,
    base          integer     NOT NULL DEFAULT 0,
    last_code     smallint    NOT NULL DEFAULT 0,
    test          boolean     NOT NULL DEFAULT false,
    status        text        NOT NULL,
    event_type    text        NOT NULL,
    upload_id     text,
    last_error    text,
    trace_parent  text,
    trace_state   text,
    body          bytea,
    PRIMARY KEY (t, id)
) PARTITION BY RANGE (t);
CREATE INDEX deliveries_account ON deliveries (account_id, t, id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, t, id);
CREATE INDEX deliveries_account_status ON deliveries (account_id, status, t, id);
CREATE INDEX deliveries_account_type ON deliveries (account_id, event_type, t, id);
CREATE INDEX deliveries_account_upload ON deliveries (account_id, upload_id, t, id) WHERE upload_id IS NOT NULL;
-- Parked work: publish order per endpoint, and the expiry scan.
CREATE INDEX deliveries_parked ON deliveries (endpoint_id, t, id) WHERE status = 'parked';
CREATE INDEX deliveries_parked_since ON deliveries (update_time) WHERE status = 'parked';

CREATE TABLE attempts (
    t           timestamptz NOT NULL,
    start_time  timestamptz NOT NULL,
    span_id     bigint,
    delivery_id uuid        NOT NULL,
    trace_id    uuid,
    number      integer     NOT NULL,
    latency_us  integer     NOT NULL DEFAULT 0,
    status_code smallint    NOT NULL DEFAULT 0,
    error_type  text,
    error       text,
    response    text,
    headers     text[],
    url         text,
    PRIMARY KEY (t, delivery_id, number)
) PARTITION BY RANGE (t);

-- Per-minute rollups of attempts per endpoint, for the dashboard's 24 h
-- charts: outcomes and a fixed latency histogram (h0..h12, bounds in
-- history.LatencyBuckets). Partitioned by day on minute.
CREATE TABLE delivery_rollups (
    minute      timestamptz NOT NULL,
    account_id  uuid        NOT NULL,
    endpoint_id uuid        NOT NULL,
    ok          integer NOT NULL DEFAULT 0,
    http_error  integer NOT NULL DEFAULT 0,
    net_error   integer NOT NULL DEFAULT 0,
    h0 integer NOT NULL DEFAULT 0, h1 integer NOT NULL DEFAULT 0, h2 integer NOT NULL DEFAULT 0,
    h3 integer NOT NULL DEFAULT 0, h4 integer NOT NULL DEFAULT 0, h5 integer NOT NULL DEFAULT 0,
    h6 integer NOT NULL DEFAULT 0, h7 integer NOT NULL DEFAULT 0, h8 integer NOT NULL DEFAULT 0,
    h9 integer NOT NULL DEFAULT 0, h10 integer NOT NULL DEFAULT 0, h11 integer NOT NULL DEFAULT 0,
    h12 integer NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, minute, endpoint_id)
) PARTITION BY RANGE (minute);
CREATE INDEX delivery_rollups_endpoint ON delivery_rollups (endpoint_id, minute);

-- Records that fit no partition (or carry ids that are not ours): kept
-- whole, so nothing is lost, and never blocking the batch they came in.
CREATE TABLE quarantine (
    seq         bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text        NOT NULL,
    record_id   text        NOT NULL,
    account_id  text        NOT NULL,
    reason      text        NOT NULL,
    record      jsonb       NOT NULL
);
CREATE INDEX quarantine_account ON quarantine (account_id);

-- +goose Down
DROP TABLE quarantine;
DROP TABLE delivery_rollups;
DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE events;
