-- orderwatch's store in PostgreSQL, schema 1: the same records as the sled
-- store, one table each. Text keys use the "C" collation, so their order is
-- byte order as sled's keys are: a page of snapshots "after an id" and the
-- name order of sources and sinks read the same on both backends. Times are
-- unix milliseconds (bigint), as the rest of orderwatch counts them.

-- The last state seen of each order. `body` is the order's JSON exactly as
-- the API sent it: text, not jsonb, because `hash` (xxh3-128, 16 bytes
-- big-endian) is of those bytes and a quiet cycle compares only hashes.
CREATE TABLE snapshots (
    source     text COLLATE "C" NOT NULL,
    order_id   text COLLATE "C" NOT NULL,
    revision   bigint  NOT NULL,
    hash       bytea   NOT NULL,
    listed     boolean NOT NULL,
    status     text,
    changed_at text    NOT NULL,
    body       text    NOT NULL,
    PRIMARY KEY (source, order_id)
);
-- The vanish step reads only the ids still listed.
CREATE INDEX snapshots_listed ON snapshots (source, order_id) WHERE listed;

-- One number per event, in commit order; outbox entries, dead letters,
-- the log and the delivery log refer to events by it.
CREATE SEQUENCE event_seq;

-- Each event's JSON (exactly the webhook body), stored once. A body stays
-- while its event is in the log or an outbox entry or dead letter refers
-- to it.
CREATE TABLE bodies (
    seq  bigint PRIMARY KEY,
    body text NOT NULL
);

-- The bounded event log for `orderwatch events` and the order timeline.
-- event_id is not unique: the sled store never refused a repeated id, and
-- the contract is the same on both.
CREATE TABLE events (
    seq          bigint PRIMARY KEY,
    event_id     text NOT NULL,
    type         text NOT NULL,
    source       text COLLATE "C" NOT NULL,
    order_id     text COLLATE "C" NOT NULL,
    committed_ms bigint NOT NULL
);
CREATE INDEX events_of_order ON events (source, order_id, seq);
CREATE INDEX events_by_id ON events (event_id);

-- Pending deliveries, one per event and sink. What is due is a range of
-- outbox_due; the head of one order at one sink is the least seq in
-- outbox_of_order, so a later event never overtakes an earlier one.
-- claimed_by / claimed_until_ms are for replicas sharing one database
-- (a delivery lease); a single orderwatch leaves them empty.
CREATE TABLE outbox (
    sink             text COLLATE "C" NOT NULL,
    seq              bigint NOT NULL,
    source           text COLLATE "C" NOT NULL,
    order_id         text COLLATE "C" NOT NULL,
    event_id         text NOT NULL,
    type             text NOT NULL,
    due_ms           bigint NOT NULL,
    attempts         integer NOT NULL,
    created_ms       bigint NOT NULL,
    last_error       text,
    claimed_by       text,
    claimed_until_ms bigint,
    PRIMARY KEY (sink, seq)
);
CREATE INDEX outbox_due ON outbox (sink, due_ms, seq);
CREATE INDEX outbox_of_order ON outbox (sink, source, order_id, seq);
CREATE INDEX outbox_seq ON outbox (seq);

-- Entries that will not be delivered without help (`dead-letters replay`).
CREATE TABLE dead_letters (
    sink       text COLLATE "C" NOT NULL,
    seq        bigint NOT NULL,
    source     text COLLATE "C" NOT NULL,
    order_id   text COLLATE "C" NOT NULL,
    event_id   text NOT NULL,
    type       text NOT NULL,
    attempts   integer NOT NULL,
    created_ms bigint NOT NULL,
    last_error text,
    reason     text NOT NULL,
    dead_ms    bigint NOT NULL,
    PRIMARY KEY (sink, seq)
);
CREATE INDEX dead_letters_seq ON dead_letters (seq);
CREATE INDEX dead_letters_of_order ON dead_letters (source, order_id);

-- The delivery log the timeline reads, trimmed with the event log.
CREATE TABLE deliveries (
    seq          bigint NOT NULL,
    sink         text COLLATE "C" NOT NULL,
    attempts     integer NOT NULL,
    delivered_ms bigint NOT NULL,
    PRIMARY KEY (seq, sink)
);

-- A source's first complete poll: after it, changes are announced.
CREATE TABLE baselines (
    source    text COLLATE "C" PRIMARY KEY,
    marked_ms bigint NOT NULL
);

-- Where an incremental listing stands (README.md "Incremental sync").
CREATE TABLE sync_state (
    source       text COLLATE "C" PRIMARY KEY,
    high_water   text,
    last_full_ms bigint
);

-- A source's failed cycles in a row and the source events already told.
CREATE TABLE source_health (
    source           text COLLATE "C" PRIMARY KEY,
    failing_since_ms bigint,
    failures         bigint NOT NULL,
    failing_told     boolean NOT NULL,
    expiry_told      text
);
