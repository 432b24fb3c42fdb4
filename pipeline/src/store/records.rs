//! What the store is given and what it gives back: owned records of a batch, detached from
//! the message buffers they came from, and rows of the totals and of the worksheet.
//!
//! A record's short texts (tracking numbers, codes, rates, regime ids) are `SmolStr`s, held in
//! place up to 23 bytes: a batch builds ~10 of them per package on the assess thread and frees
//! them on the commit thread after its commit. Flat out, allocation was ~10% of the assess
//! thread's samples and freeing a committed batch ~10% of the commit thread's, of which these
//! strings were most of the allocations.

use smol_str::SmolStr;

/// One item line of an accepted package.
#[derive(Debug, Clone)]
pub struct LineRecord {
    pub item: u32,
    pub origin_country: SmolStr,
    pub hts: Option<SmolStr>,
    pub value_cents: i64,
    pub rate: SmolStr,
    pub duty_cents: i64,
}

/// What an accepted package adds to the totals.
#[derive(Debug, Clone)]
pub struct AcceptedRecord {
    pub regime: SmolStr,
    pub method: &'static str,
    pub value_cents: i64,
    pub duty_cents: i64,
    pub fees_cents: i64,
    pub rates_version: SmolStr,
    pub lines: Vec<LineRecord>,
}

/// One package of a manifest, accepted or rejected by the operators.
#[derive(Debug, Clone)]
pub struct PackageRecord {
    pub index: u32,
    pub tracking_number: Option<SmolStr>,
    /// `Some` when accepted by the operators (the store may still reject it as a duplicate).
    pub accepted: Option<AcceptedRecord>,
    /// The primary error code when rejected.
    pub rejected_code: Option<&'static str>,
}

/// One manifest of a batch, as the store needs it (owned, detached from message buffers).
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub carrier: String,
    pub manifest_id: String,
    pub trip_number: String,
    pub port_of_arrival: String,
    pub arrival_date: chrono::NaiveDate,
    pub month: String,
    /// A dead-letter replay: it replaces one package of the original manifest, not the whole.
    pub replay: bool,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub packages: Vec<PackageRecord>,
}

/// Offsets a batch covers on one partition: it starts where the previous batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    pub topic: String,
    pub partition: i32,
    /// The stored next offset this batch expects (-1: nothing stored yet).
    pub expected: i64,
    /// The next offset after this batch.
    pub next: i64,
}

/// A package the store rejected: its tracking number was accepted in another manifest of the
/// same carrier within 12 months.
#[derive(Debug, Clone)]
pub struct StoreRejection {
    pub manifest: usize,
    pub package: usize,
    pub other_manifest_id: String,
    pub other_arrival_date: String,
}

/// What [`Store::commit_batch`](super::Store::commit_batch) did with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Another consumer moved this partition's offset: the batch was not applied.
    Fenced {
        topic: String,
        partition: i32,
        stored: i64,
    },
}

/// One row of the monthly totals.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TotalsRow {
    pub carrier: String,
    pub month: String,
    pub regime: String,
    pub method: String,
    pub packages: i64,
    pub item_lines: i64,
    pub value_cents: i64,
    pub duty_cents: i64,
    pub fees_cents: i64,
    pub rejected_packages: i64,
}

/// One item line of a carrier's month: a row of page 2 of the worksheet.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorksheetLine {
    pub carrier: String,
    pub trip_number: String,
    pub tracking_number: String,
    pub port_of_arrival: String,
    pub arrival_date: String,
    pub value_cents: i64,
    pub origin_country: String,
    pub rate: String,
    pub duty_cents: i64,
}
