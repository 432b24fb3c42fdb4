-- dutyflow store, version 1. Portable SQL: the same statements run on SQLite and PostgreSQL.
-- Money is stored as integer cents (exact); rates as the decimal text they were assessed at.

-- Input offsets covered by committed batches, per consumer group and partition. A batch's
-- store changes and its offsets commit in one transaction (exactly once).
CREATE TABLE offsets (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_id)
);

-- The latest version of every manifest seen (carrier + manifest_id); an amendment replaces it.
CREATE TABLE manifests (
    carrier TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    month TEXT NOT NULL,
    packages INTEGER NOT NULL,
    versions INTEGER NOT NULL,
    source_topic TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL,
    PRIMARY KEY (carrier, manifest_id)
);

-- Accepted packages: the contribution of each manifest to the totals.
CREATE TABLE packages (
    carrier TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    trip_number TEXT NOT NULL,
    port_of_arrival TEXT NOT NULL,
    arrival_date TEXT NOT NULL,
    month TEXT NOT NULL,
    regime TEXT NOT NULL,
    method TEXT NOT NULL,
    item_lines INTEGER NOT NULL,
    value_cents BIGINT NOT NULL,
    duty_cents BIGINT NOT NULL,
    fees_cents BIGINT NOT NULL,
    rates_version TEXT NOT NULL,
    PRIMARY KEY (carrier, manifest_id, tracking_number)
);
CREATE INDEX packages_by_tracking ON packages (carrier, tracking_number, arrival_date);

-- Item lines behind the totals: page 2 of the monthly worksheet.
CREATE TABLE item_lines (
    carrier TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    item INTEGER NOT NULL,
    origin_country TEXT NOT NULL,
    hts TEXT,
    value_cents BIGINT NOT NULL,
    rate TEXT NOT NULL,
    duty_cents BIGINT NOT NULL,
    PRIMARY KEY (carrier, manifest_id, tracking_number, item)
);

-- Rejected packages of manifests whose carrier and month are known.
CREATE TABLE rejected_packages (
    carrier TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    package_index INTEGER NOT NULL,
    tracking_number TEXT,
    month TEXT NOT NULL,
    code TEXT NOT NULL,
    PRIMARY KEY (carrier, manifest_id, package_index)
);

-- Monthly totals per carrier, month, regime and method, maintained with every batch.
CREATE TABLE totals (
    carrier TEXT NOT NULL,
    month TEXT NOT NULL,
    regime TEXT NOT NULL,
    method TEXT NOT NULL,
    packages BIGINT NOT NULL,
    item_lines BIGINT NOT NULL,
    value_cents BIGINT NOT NULL,
    duty_cents BIGINT NOT NULL,
    fees_cents BIGINT NOT NULL,
    PRIMARY KEY (carrier, month, regime, method)
);
