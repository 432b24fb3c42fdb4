-- dutyflow store, version 3: per carrier, how many rows it has in `tracking_numbers_recent`,
-- how far the move of those rows into `tracking_numbers` has come, and a version of its
-- tracking numbers.
--
-- `recent_rows` is kept by the batches that add and remove rows, so that deciding whether a
-- carrier's recent numbers are due to move reads one row, not the carrier's whole part of the
-- small table (counting it cost every batch ~10 ms, whatever the batch's size).
--
-- A move goes in key order, a slice per batch, so that no one commit carries all of it:
-- `moved_before_*` is the key where the rows not moved yet start (NULL: no move under way).
-- Rows added behind that key during a move wait for the next one.
CREATE TABLE tracking_numbers_recent_counts (
    carrier TEXT PRIMARY KEY,
    recent_rows BIGINT NOT NULL,
    moved_before_tracking_number TEXT,
    moved_before_manifest_id TEXT,
    -- Bumped by every batch that adds tracking numbers of the carrier: a process's in-memory
    -- filter of the carrier's numbers is complete while it holds the version it was kept up to
    -- (pipeline/src/store/filter.rs).
    numbers_version BIGINT NOT NULL DEFAULT 0
);

INSERT INTO tracking_numbers_recent_counts (carrier, recent_rows)
SELECT carrier, COUNT(*) FROM tracking_numbers_recent GROUP BY carrier;
