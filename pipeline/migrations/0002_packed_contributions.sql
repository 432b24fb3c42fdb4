-- dutyflow store, version 2: a manifest's accepted packages and item lines are kept in its own
-- row (`manifests.contribution`), not as a row per package and per item line. Version 1 wrote
-- about six B-tree entries per accepted package, in random key order (`packages`, its primary
-- key and `packages_by_tracking`; two per item line); version 2 writes one (`tracking_numbers`),
-- plus three per manifest.
--
-- `/*WITHOUT ROWID*/` is a comment to PostgreSQL; on SQLite the store makes it a table option
-- (the table is then its primary-key B-tree only, with no second B-tree of row ids).
--
-- The rows of version 1's `packages` and `item_lines` are moved into the new columns by the
-- store, in Rust, in the same transaction as this script (pipeline/src/store/migrate.rs); it
-- then drops those two tables.

-- The accepted packages of the manifest's latest version: one line per package,
--   tracking_number TAB month TAB arrival_date TAB trip_number TAB port_of_arrival
--   TAB regime TAB method TAB rates_version TAB value TAB duty TAB fees
-- followed by one TAB-separated field per item line,
--   item,origin_country,hts,value,rate,duty
-- with amounts in integer cents and an empty hts when none was declared. Lines end with a
-- newline. None of these fields can hold a TAB, a comma or a newline: the operators validate
-- them, and the store refuses a batch that would break the format.
-- Each line holds its own header fields: a dead-letter replay may correct them for one package.
ALTER TABLE manifests ADD COLUMN contribution TEXT NOT NULL DEFAULT '';

-- The months a manifest has accepted packages in (usually one), for page 2 of the worksheet.
-- A row may outlive the last package of its month: readers filter the lines by month.
CREATE TABLE manifest_months (
    carrier TEXT NOT NULL,
    month TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    PRIMARY KEY (carrier, month, manifest_id)
) /*WITHOUT ROWID*/;

-- Accepted tracking numbers, for the 12-month duplicate check, and to remove a manifest's
-- numbers when an amendment replaces it. In two tables with the same rows' shape: batches add to
-- the small `tracking_numbers_recent`, and once a carrier has enough rows there, a batch of that
-- carrier moves them into `tracking_numbers` in key order. Random insertions into a large
-- B-tree change one page each (SQLite writes whole pages to its WAL); a sorted merge changes
-- each page once for many rows. A number is in one of the two tables.
CREATE TABLE tracking_numbers (
    carrier TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    arrival_date TEXT NOT NULL,
    PRIMARY KEY (carrier, tracking_number, manifest_id)
) /*WITHOUT ROWID*/;
CREATE TABLE tracking_numbers_recent (
    carrier TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    arrival_date TEXT NOT NULL,
    PRIMARY KEY (carrier, tracking_number, manifest_id)
) /*WITHOUT ROWID*/;
