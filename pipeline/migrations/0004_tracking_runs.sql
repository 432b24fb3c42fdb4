-- dutyflow store, version 4: accepted tracking numbers as sorted runs of text chunks, merged as
-- they accumulate, instead of a B-tree row per number (`tracking_numbers`,
-- `tracking_numbers_recent` and their counts, which this version drops).
--
-- A B-tree row per accepted package, keyed by a random tracking number, dirties about one page
-- per insertion, and SQLite writes whole pages to its WAL and again to the database: version 3
-- wrote ~2.4 KB per package flat out (BENCHMARKS.md §4). A run is written in key order, a chunk
-- at a time, so a number costs its ~40 bytes of text each time a merge rewrites it.
--
-- The store copies version 3's numbers into one run per carrier, in Rust, in the same
-- transaction as this script (pipeline/src/store/migrate.rs), then drops the old tables.

-- One row per run of a carrier. `run_id` is the carrier's `numbers_version` at which the run was
-- written; `newest_source` is the newest run whose numbers it holds (itself, for a batch's run;
-- the newest of the merged runs, for a merge), which a process's in-memory filter catches up
-- from (pipeline/src/store/filter.rs).
CREATE TABLE tracking_runs (
    carrier TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    level INTEGER NOT NULL,
    entries BIGINT NOT NULL,
    newest_source BIGINT NOT NULL,
    PRIMARY KEY (carrier, run_id)
) /*WITHOUT ROWID*/;

-- A run's entries in key order, one line each, `TRACKING_NUMBER TAB MANIFEST_ID TAB ARRIVAL_DATE`,
-- about 128 lines a chunk, keyed by the chunk's first tracking number. The entries of one number
-- never span two chunks. (A rowid table: its rows are a few KB, too large for WITHOUT ROWID.)
CREATE TABLE tracking_run_chunks (
    carrier TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    first_number TEXT NOT NULL,
    entries TEXT NOT NULL,
    PRIMARY KEY (carrier, run_id, first_number)
);

-- A merge of runs under way: it goes a slice per batch of the carrier (pipeline/src/store/runs.rs).
-- The merged runs (`sources`, their ids space-separated, all of `level`) count until it ends; the
-- run it writes (`run_id`, of the next level) has chunks but no `tracking_runs` row until then.
-- `positions` says where the merge stands in each source (`^` not begun, `$` done, else the first
-- number of the chunk it reads and the offset of its line there); `previous` is the last line it
-- wrote, so that an entry in two runs is written once.
CREATE TABLE tracking_merges (
    carrier TEXT NOT NULL,
    level INTEGER NOT NULL,
    run_id BIGINT NOT NULL,
    sources TEXT NOT NULL,
    newest_source BIGINT NOT NULL,
    positions TEXT NOT NULL,
    previous TEXT NOT NULL,
    entries BIGINT NOT NULL,
    PRIMARY KEY (carrier, level)
);

-- Per carrier: bumped by every run written (a batch's, or a merge's), under the carrier's lock.
CREATE TABLE tracking_versions (
    carrier TEXT PRIMARY KEY,
    numbers_version BIGINT NOT NULL
);

INSERT INTO tracking_versions (carrier, numbers_version)
SELECT carrier, numbers_version FROM tracking_numbers_recent_counts;
