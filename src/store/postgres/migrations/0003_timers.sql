-- The timer index (due dates and stalled orders), as the sled store keeps
-- it: what each open order's timers are about and what was already told
-- of them, the schedule by fire time the timer reads a range of, and the
-- settings each source's index was built with. The record is the same
-- JSON the sled store writes, so both backends weigh it alike.
CREATE TABLE timers (
    source   text COLLATE "C" NOT NULL,
    order_id text COLLATE "C" NOT NULL,
    record   text NOT NULL,
    PRIMARY KEY (source, order_id)
);

-- One row per armed timer; kind 1 due_soon, 2 overdue, 3 stalled.
CREATE TABLE timer_schedule (
    fire_ms  bigint NOT NULL,
    source   text COLLATE "C" NOT NULL,
    order_id text COLLATE "C" NOT NULL,
    kind     smallint NOT NULL,
    PRIMARY KEY (fire_ms, source, order_id, kind)
);

CREATE TABLE timer_settings (
    source      text COLLATE "C" PRIMARY KEY,
    fingerprint text NOT NULL
);
