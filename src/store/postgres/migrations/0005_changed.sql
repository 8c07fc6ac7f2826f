-- Orders by the time of their last change (README.md "orders list
-- --sort changed"), newest first across pages: the snapshot's change time
-- as unix milliseconds, written with it by every commit, and an index in
-- the listing's order (ties: source, then order id, both descending, as
-- the sled store's `changed` tree reads). Rows written before this
-- migration get it from their `changed_at` (RFC 3339 in UTC, as orderwatch
-- writes it; anything else counts as the oldest).
ALTER TABLE snapshots ADD COLUMN changed_ms bigint NOT NULL DEFAULT 0;
UPDATE snapshots
    SET changed_ms = floor(extract(epoch FROM changed_at::timestamptz) * 1000)::bigint
    WHERE changed_at ~ '^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?[Zz]$';
CREATE INDEX snapshots_changed ON snapshots (changed_ms DESC, source DESC, order_id DESC);
