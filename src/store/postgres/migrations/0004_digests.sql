-- Digests (README.md "Digests and quiet hours"): the events kept for a
-- sink's digest until its period ends, each holding its body as an outbox
-- entry does, and per sink since when its first digest has been waiting
-- (from_ms NULL once it is made). Quiet hours need no table: a held entry
-- is an outbox entry due when they end.
CREATE TABLE digest_held (
    sink       text COLLATE "C" NOT NULL,
    seq        bigint NOT NULL,
    source     text COLLATE "C" NOT NULL,
    order_id   text COLLATE "C" NOT NULL,
    event_id   text NOT NULL,
    type       text NOT NULL,
    attempts   integer NOT NULL,
    created_ms bigint NOT NULL,
    last_error text,
    PRIMARY KEY (sink, seq)
);
CREATE INDEX digest_held_seq ON digest_held (seq);

CREATE TABLE digest_first (
    sink    text COLLATE "C" PRIMARY KEY,
    from_ms bigint
);
