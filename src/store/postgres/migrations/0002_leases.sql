-- Replicas: several `orderwatch run` on one database. Each source is polled
-- by the holder of its lease, which renews it every cycle and with every
-- commit; another replica takes it over once it has run out, and the
-- fencing token goes up with every change of holder. A commit of a
-- source's snapshots checks its token inside its own transaction, against
-- this row locked, so a paused or cut-off former leader can never commit
-- after a new leader took over. Times are the database's own clock, so the
-- replicas' clocks need not agree.
CREATE TABLE leases (
    source        text COLLATE "C" PRIMARY KEY,
    holder        text   NOT NULL,
    fencing_token bigint NOT NULL,
    lease_until   timestamptz NOT NULL
);
