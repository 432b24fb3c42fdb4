-- dutyflow store, version 3: how many rows each carrier has in `tracking_numbers_recent`, kept
-- by the batches that add and remove them, so that deciding whether a carrier's recent numbers
-- are due to move into `tracking_numbers` reads one row, not the carrier's whole part of the
-- small table (that count cost every batch ~10 ms, whatever its size).
CREATE TABLE tracking_numbers_recent_counts (
    carrier TEXT PRIMARY KEY,
    recent_rows BIGINT NOT NULL
);

INSERT INTO tracking_numbers_recent_counts (carrier, recent_rows)
SELECT carrier, COUNT(*) FROM tracking_numbers_recent GROUP BY carrier;
