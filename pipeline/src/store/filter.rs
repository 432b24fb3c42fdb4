//! Which tracking numbers a carrier certainly does not have in the store: a Bloom filter per
//! carrier, kept in memory by the process that commits, so that the 12-month duplicate check
//! reads the store only for the numbers the filter may hold (~0.2% of absent numbers once it is
//! full), instead of searching every run of the carrier for every number.
//!
//! A filter is a cache of the store, trusted only while it is complete. Every run of a carrier's
//! numbers written to the store bumps the carrier's `numbers_version` (`tracking_versions`), in
//! its transaction, under the carrier's lock, and takes that version as its id (`runs.rs`). A
//! filter records the version it is complete for; the plan of a batch reads the carrier's version
//! under the lock and:
//! - uses the filter when the two agree;
//! - when the store is ahead (another process committed numbers of the carrier), first adds the
//!   numbers of the runs that hold numbers newer than the filter (`newest_source`), then uses it;
//! - without a filter, builds it from every run of the carrier, and uses it at once.
//!
//! Numbers an amendment removes stay in the filter: it may only say "maybe" too often, never
//! "no" wrongly.
//!
//! A filter is one table, sized when it is built for the numbers the store holds and a quarter
//! more. Once the batches have filled it, it is built again from the store, twice the size or
//! more, a slice per batch of the carrier ([`runs::scan_numbers`], in key order across the
//! carrier's runs, merges or not), while the full table goes on answering: past full it stays
//! right, it only says "maybe" a little more often. The numbers that batches add meanwhile go to
//! both tables; the new one replaces the old once the scan has read every run. So a number is
//! read back about twice over the filter's growth, no commit carries a whole rebuild (55–95 ms
//! at 0.5 M numbers, and every carrier filled at the same time), and a "maybe" stays as rare as
//! one full table makes it. (Tables added beside the full ones instead, each twice the last,
//! passed 0.8% of absent numbers at 400,000 numbers and 1.4% at 4 M, ten times one table's rate:
//! every table adds its own false "maybe", and each costs a search of every run of the carrier.)
//!
//! Memory is bounded by [`MAX_BYTES`] over all carriers (16 bits per number when full, where it
//! passes ~0.2% of absent numbers; up to 40 once the table takes its quarter more and rounds up
//! to a power of two: 20–50 MB per 10 M numbers, and the table being built beside it). A filter
//! that cannot grow within it goes on past full, passing more absent numbers as it fills (2.8% at
//! twice its numbers, 30% at four times); a carrier whose filter cannot be built at all within it
//! is searched in the store for every number.

use super::runs::Scan;
use std::collections::HashMap;

/// Bits of filter per number when it is full, with 8 bits set per number in one 512-bit block:
/// it then passes ~0.2% of absent numbers (12 bits: 0.56%; 24: 0.08%).
const BITS_PER_KEY: usize = 16;
const BITS_SET: u32 = 8;
/// Numbers the smallest filter holds.
const FIRST_CAPACITY: usize = 1 << 14;
/// Room a filter is built with for the numbers batches will add, as a share of those it is built
/// with: a quarter (at least; the table rounds up to a power of two).
const HEADROOM_DIVISOR: usize = 4;
/// A slice of the scan that builds a full filter again reads this many times the numbers its
/// batch adds to the carrier, and at least [`MIN_SCAN_SLICE`].
const SCAN_FACTOR: usize = 4;
const MIN_SCAN_SLICE: usize = 2048;
/// The most memory all carriers' filters may take.
pub(super) const MAX_BYTES: usize = 64 << 20;

/// A blocked Bloom filter: each number sets [`BITS_SET`] bits within one 64-byte block, so a
/// lookup touches one cache line.
struct Part {
    blocks: Vec<[u64; 8]>,
    keys: usize,
    /// The numbers it holds at [`BITS_PER_KEY`] bits each: past them, it is full.
    capacity: usize,
}

impl Part {
    /// The blocks of a table for `numbers` numbers at least: a power of two.
    fn blocks_for(numbers: usize) -> usize {
        (numbers.max(1) * BITS_PER_KEY).div_ceil(512).next_power_of_two()
    }

    /// The memory of that table, before it is allocated.
    fn bytes_for(numbers: usize) -> usize {
        Self::blocks_for(numbers) * 64
    }

    /// A table for `numbers` numbers at least, rounded up to a power of two of blocks.
    fn new(numbers: usize) -> Self {
        let blocks = Self::blocks_for(numbers);
        Part {
            blocks: vec![[0; 8]; blocks],
            keys: 0,
            capacity: blocks * 512 / BITS_PER_KEY,
        }
    }

    fn bytes(&self) -> usize {
        self.blocks.len() * 64
    }

    /// The block and the bits of a number's hash.
    fn bits(&self, h: u64) -> (usize, impl Iterator<Item = (usize, u64)>) {
        let block = (h >> 32) as usize & (self.blocks.len() - 1);
        let (h1, h2) = (h as u32, ((h >> 16) as u32) | 1);
        let bits = (0..BITS_SET).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & 511;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        });
        (block, bits)
    }

    fn insert(&mut self, h: u64) {
        let (block, bits) = self.bits(h);
        for (word, mask) in bits {
            self.blocks[block][word] |= mask;
        }
        self.keys += 1;
    }

    fn may_contain(&self, h: u64) -> bool {
        let (block, mut bits) = self.bits(h);
        let b = &self.blocks[block];
        bits.all(|(word, mask)| b[word] & mask != 0)
    }
}

/// One carrier's filter.
struct CarrierFilter {
    /// The carrier's `numbers_version` this filter holds every number of.
    version: i64,
    part: Part,
    /// Its next table, while the scan fills it.
    next: Option<Next>,
}

/// A filter's next table, being built: it holds the numbers the scan has read so far and every
/// number added since the scan began.
struct Next {
    part: Part,
    /// Level-0 runs newer than this version are not read: their numbers came with their batch.
    since: i64,
    scan: Scan,
}

impl CarrierFilter {
    fn insert(&mut self, t: &str) {
        let h = hash(t);
        self.part.insert(h);
        if let Some(next) = &mut self.next {
            next.part.insert(h);
        }
    }

    fn bytes(&self) -> usize {
        self.part.bytes() + self.next.as_ref().map_or(0, |n| n.part.bytes())
    }
}

/// What this process knows of a carrier.
enum Known {
    Filter(CarrierFilter),
    /// Read from the store for good: its filter, built from the store, would have taken more
    /// than the memory left (the next tables other carriers were building given up first).
    StoreOnly,
}

/// The filters of every carrier this process has committed.
pub(crate) struct Filters {
    carriers: HashMap<String, Known>,
    bytes: usize,
    /// [`MAX_BYTES`], smaller in tests.
    max_bytes: usize,
    /// [`FIRST_CAPACITY`], [`SCAN_FACTOR`] and [`MIN_SCAN_SLICE`], other in tests.
    first_capacity: usize,
    scan_factor: usize,
    min_scan_slice: usize,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            carriers: HashMap::new(),
            bytes: 0,
            max_bytes: MAX_BYTES,
            first_capacity: FIRST_CAPACITY,
            scan_factor: SCAN_FACTOR,
            min_scan_slice: MIN_SCAN_SLICE,
        }
    }
}

/// How the plan of a batch checks one carrier's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Only the numbers [`Filters::maybe_held`] passes need reading.
    Filter,
    /// The filter is complete for version `since`, older than the store's: the plan adds the
    /// numbers of the runs newer than that ([`Filters::catch_up`]), then uses it.
    CatchUp { since: i64 },
    /// Every number needs reading; with `rebuild`, the plan then builds the carrier's filter
    /// from the store ([`Filters::rebuild`]).
    Store { rebuild: bool },
}

impl Filters {
    /// For tests: the smallest filter (see [`FIRST_CAPACITY`]), and scan slices of `scan_slice`
    /// entries whatever the batch adds.
    pub(super) fn set_sizes(&mut self, first_capacity: usize, scan_slice: usize) {
        self.first_capacity = first_capacity.max(1);
        self.scan_factor = 0;
        self.min_scan_slice = scan_slice.max(1);
    }

    /// The numbers a slice of a scan reads when its batch adds `added` numbers of the carrier.
    pub(super) fn scan_slice_entries(&self, added: usize) -> usize {
        (self.scan_factor * added).max(self.min_scan_slice)
    }

    /// What the filters hold, for the service's metrics.
    pub(super) fn summary(&self) -> super::DuplicateFilters {
        let mut s = super::DuplicateFilters {
            bytes: self.bytes,
            max_bytes: self.max_bytes,
            ..Default::default()
        };
        for known in self.carriers.values() {
            match known {
                Known::Filter(f) if f.next.is_some() => s.growing += 1,
                Known::Filter(_) => s.filtered += 1,
                Known::StoreOnly => s.store_only += 1,
            }
        }
        s
    }

    /// `carrier`'s filter: the numbers it holds, how many it is built for, and whether its next
    /// table is being built. For tests.
    pub(super) fn state(&self, carrier: &str) -> Option<(usize, usize, bool)> {
        match self.carriers.get(carrier) {
            Some(Known::Filter(f)) => Some((f.part.keys, f.part.capacity, f.next.is_some())),
            _ => None,
        }
    }

    /// How to check `carrier`'s numbers, given its `numbers_version` read under its lock.
    pub(super) fn check(&mut self, carrier: &str, version: i64) -> Check {
        match self.carriers.get(carrier) {
            Some(Known::Filter(f)) if f.version == version => Check::Filter,
            Some(Known::Filter(f)) if f.version < version => Check::CatchUp { since: f.version },
            Some(Known::Filter(_)) => {
                // The store is behind the filter: not the store it was built from.
                self.forget(carrier);
                Check::Store { rebuild: true }
            }
            Some(Known::StoreOnly) => Check::Store { rebuild: false },
            None => Check::Store { rebuild: true },
        }
    }

    /// Of `numbers`, those `carrier` may have in the store at `version`: those its filter
    /// passes when the filter is complete for that version, else all of them.
    pub(super) fn maybe_held<'n>(
        &self,
        carrier: &str,
        version: i64,
        numbers: impl Iterator<Item = &'n str>,
    ) -> Vec<&'n str> {
        match self.carriers.get(carrier) {
            Some(Known::Filter(f)) if f.version == version => numbers.filter(|t| f.part.may_contain(hash(t))).collect(),
            _ => numbers.collect(),
        }
    }

    /// Builds `carrier`'s filter from the `count` numbers the store holds of it at `version`,
    /// which `fill` hands over one by one, with room for a quarter more.
    pub(super) fn rebuild(
        &mut self,
        carrier: &str,
        version: i64,
        count: usize,
        fill: impl FnOnce(&mut dyn FnMut(&str)) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.forget(carrier);
        let numbers = (count + count / HEADROOM_DIVISOR).max(self.first_capacity);
        let bytes = Part::bytes_for(numbers);
        if self.bytes + bytes > self.max_bytes {
            // The tables other carriers are building are the memory to give up first: their
            // filters go on past full.
            for known in self.carriers.values_mut() {
                if let Known::Filter(f) = known {
                    if let Some(next) = f.next.take() {
                        self.bytes -= next.part.bytes();
                    }
                }
            }
        }
        if self.bytes + bytes > self.max_bytes {
            self.carriers.insert(carrier.to_string(), Known::StoreOnly);
            return Ok(());
        }
        let mut part = Part::new(numbers);
        fill(&mut |t| part.insert(hash(t)))?;
        self.bytes += part.bytes();
        let f = CarrierFilter {
            version,
            part,
            next: None,
        };
        self.carriers.insert(carrier.to_string(), Known::Filter(f));
        Ok(())
    }

    /// Brings `carrier`'s filter from the version it is complete for up to `version`: `fill`
    /// hands over the numbers of every run newer than the filter.
    pub(super) fn catch_up(
        &mut self,
        carrier: &str,
        version: i64,
        fill: impl FnOnce(&mut dyn FnMut(&str)) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let Some(Known::Filter(f)) = self.carriers.get_mut(carrier) else {
            return Ok(());
        };
        let filled = fill(&mut |t| f.insert(t));
        f.version = version;
        if filled.is_err() {
            // Part of the numbers: no longer complete for any version.
            self.forget(carrier);
        }
        filled
    }

    /// How many numbers `carrier`'s filter holds (0 without one).
    pub(super) fn keys(&self, carrier: &str) -> usize {
        match self.carriers.get(carrier) {
            Some(Known::Filter(f)) => f.part.keys,
            _ => 0,
        }
    }

    /// After a batch committed with `added` numbers of `carrier` more, which took the carrier's
    /// version from `planned` (read under its lock) to `version`. Only a filter that was complete
    /// for `planned` is kept up.
    pub(super) fn committed<'n>(
        &mut self,
        carrier: &str,
        planned: i64,
        version: i64,
        added: impl Iterator<Item = &'n str>,
    ) {
        let Some(Known::Filter(f)) = self.carriers.get_mut(carrier) else {
            return;
        };
        if f.version != planned {
            return;
        }
        added.for_each(|t| f.insert(t));
        f.version = version;
    }

    /// Where the next slice of the scan that builds `carrier`'s filter again starts, and from
    /// which version it skips level-0 runs, when a slice is due: the filter is complete for
    /// `version`, and full or being built again already. A full filter starts its next table
    /// here, twice the size or more, if the memory bound allows it.
    pub(super) fn scan_due(&mut self, carrier: &str, version: i64) -> Option<(i64, Scan)> {
        let Some(Known::Filter(f)) = self.carriers.get_mut(carrier) else {
            return None;
        };
        if f.version != version {
            return None;
        }
        if f.next.is_none() && f.part.keys > f.part.capacity {
            let numbers = f.part.keys + f.part.keys / HEADROOM_DIVISOR;
            if self.bytes + Part::bytes_for(numbers) > self.max_bytes {
                return None;
            }
            let part = Part::new(numbers);
            self.bytes += part.bytes();
            f.next = Some(Next {
                part,
                since: version,
                scan: Scan::default(),
            });
        }
        f.next.as_ref().map(|n| (n.since, n.scan.clone()))
    }

    /// Adds a slice of the scan to `carrier`'s next table: `fill` hands over its numbers and
    /// returns where the scan stands after it, `None` once it has read every run: the next table
    /// then replaces the filter's, and this returns `true` (see [`Filters::set_keys`]). A slice
    /// that fails drops the next table.
    pub(super) fn scan_slice(
        &mut self,
        carrier: &str,
        fill: impl FnOnce(&mut dyn FnMut(&str)) -> anyhow::Result<Option<Scan>>,
    ) -> anyhow::Result<bool> {
        let Some(Known::Filter(f)) = self.carriers.get_mut(carrier) else {
            return Ok(false);
        };
        let Some(next) = &mut f.next else {
            return Ok(false);
        };
        match fill(&mut |t| next.part.insert(hash(t))) {
            Ok(Some(scan)) => next.scan = scan,
            Ok(None) => {
                let mut next = f.next.take().expect("a next table");
                // It holds every number the old one does (and some twice, read from two runs
                // or a batch and a run): the old count is the better one, until `set_keys`.
                next.part.keys = f.part.keys;
                let old = std::mem::replace(&mut f.part, next.part);
                self.bytes -= old.bytes();
                return Ok(true);
            }
            Err(e) => {
                let next = f.next.take().expect("a next table");
                self.bytes -= next.part.bytes();
                return Err(e);
            }
        }
        Ok(false)
    }

    /// Sets how many numbers `carrier`'s filter holds, as the store counts them: a filter counts
    /// every number it is given, and a catch-up gives again those that merged runs hold, so its
    /// count drifts above the store's (and it would fill early).
    pub(super) fn set_keys(&mut self, carrier: &str, keys: usize) {
        if let Some(Known::Filter(f)) = self.carriers.get_mut(carrier) {
            f.part.keys = keys;
        }
    }

    fn forget(&mut self, carrier: &str) {
        if let Some(Known::Filter(f)) = self.carriers.remove(carrier) {
            self.bytes -= f.bytes();
        }
    }
}

/// A 64-bit hash of a tracking number: eight bytes at a time (a tracking number is one word
/// and a tail), each word mixed in by a multiply and a rotation, then a finalizer that spreads
/// every input bit over the output. (Byte by byte, FNV-1a, the two hashes per number were 4% of
/// the store's CPU.)
fn hash(s: &str) -> u64 {
    let bytes = s.as_bytes();
    let mut h = 0x9e37_79b9_7f4a_7c15 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().expect("a chunk of 8"));
        h = (h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0xc4ce_b9fe_1a85_ec53)
            .rotate_left(29);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(i: u32) -> String {
        format!("RR{i:09}DE")
    }

    #[test]
    fn a_filter_never_misses_a_number_it_holds_and_seldom_passes_others() {
        let mut filters = Filters::default();
        filters
            .rebuild("LH", 3, 50_000, |add| {
                (0..50_000).for_each(|i| add(&number(i)));
                Ok(())
            })
            .unwrap();
        assert_eq!(filters.check("LH", 3), Check::Filter);
        // Filled by later batches up to what it was built to hold (50,000 and a quarter more,
        // rounded up to a power of two of blocks: 65,536).
        let capacity = 2048 * 512 / BITS_PER_KEY as u32;
        let added: Vec<String> = (50_000..capacity).map(number).collect();
        filters.committed("LH", 3, 4, added.iter().map(String::as_str));
        assert_eq!(filters.check("LH", 4), Check::Filter);
        let held: Vec<String> = (0..capacity).map(number).collect();
        assert_eq!(
            filters.maybe_held("LH", 4, held.iter().map(String::as_str)).len(),
            held.len()
        );
        let absent: Vec<String> = (1_000_000..1_100_000).map(number).collect();
        let passed = filters.maybe_held("LH", 4, absent.iter().map(String::as_str)).len();
        // ~0.2% by the filter's design when full; a hash that spread the numbers' bits badly
        // would pass many more.
        assert!(passed < 300, "{passed} of 100,000 absent numbers passed");
        // One number more: full, so a larger table is built beside it, a slice per batch; the
        // full one answers meanwhile, and numbers added meanwhile go to both.
        assert_eq!(filters.scan_due("LH", 4), None);
        filters.committed("LH", 4, 5, [number(capacity).as_str()].into_iter());
        assert_eq!(filters.scan_due("LH", 4), None, "not at the filter's version");
        let (since, scan) = filters.scan_due("LH", 5).unwrap();
        assert_eq!((since, scan.from), (5, None));
        assert_eq!(filters.bytes, (2048 + 4096) * 64);
        let half = Scan {
            from: Some(number(capacity / 2)),
            runs: vec![1],
        };
        filters
            .scan_slice("LH", |add| {
                (0..capacity / 2).for_each(|i| add(&number(i)));
                Ok(Some(half.clone()))
            })
            .unwrap();
        assert_eq!(filters.scan_due("LH", 5).unwrap().1.from, half.from);
        filters.committed("LH", 5, 6, [number(capacity + 1).as_str()].into_iter());
        assert_eq!(
            filters.maybe_held("LH", 6, held.iter().map(String::as_str)).len(),
            held.len()
        );
        // The last slice: the new table replaces the old.
        filters
            .scan_slice("LH", |add| {
                (capacity / 2..=capacity).for_each(|i| add(&number(i)));
                Ok(None)
            })
            .unwrap();
        assert_eq!(filters.state("LH"), Some((capacity as usize + 2, 131_072, false)));
        assert_eq!(filters.bytes, 4096 * 64);
        let all: Vec<String> = (0..capacity + 2).map(number).collect();
        assert_eq!(
            filters.maybe_held("LH", 6, all.iter().map(String::as_str)).len(),
            all.len()
        );
        let passed = filters.maybe_held("LH", 6, absent.iter().map(String::as_str)).len();
        assert!(
            passed < 100,
            "{passed} of 100,000 absent numbers passed once built again"
        );
        assert_eq!(filters.scan_due("LH", 6), None);
    }

    #[test]
    fn a_scan_that_fails_drops_the_table_it_was_building() {
        let mut filters = Filters::default();
        filters.rebuild("LH", 0, 0, |_| Ok(())).unwrap();
        let full: Vec<String> = (0..=FIRST_CAPACITY as u32).map(number).collect();
        filters.committed("LH", 0, 1, full.iter().map(String::as_str));
        let small = filters.bytes;
        assert!(filters.scan_due("LH", 1).is_some());
        assert!(filters.bytes > small);
        let failed = filters.scan_slice("LH", |add| {
            add(&number(0));
            anyhow::bail!("the store went away")
        });
        assert!(failed.is_err());
        assert_eq!(filters.bytes, small);
        assert_eq!(filters.state("LH"), Some((full.len(), FIRST_CAPACITY, false)));
        // The full filter still answers, and the next batch starts the scan again.
        assert_eq!(filters.check("LH", 1), Check::Filter);
        assert_eq!(filters.scan_due("LH", 1).unwrap().1.from, None);
    }

    #[test]
    fn a_filter_is_trusted_only_at_its_version_and_catches_up() {
        let mut filters = Filters::default();
        assert_eq!(filters.check("LH", 0), Check::Store { rebuild: true });
        filters.rebuild("LH", 0, 0, |_| Ok(())).unwrap();
        assert_eq!(filters.check("LH", 0), Check::Filter);
        // A batch planned at another version does not move the filter.
        filters.committed("LH", 5, 6, ["RR000000001DE"].into_iter());
        assert_eq!(filters.check("LH", 0), Check::Filter);
        assert!(filters.maybe_held("LH", 0, ["RR000000001DE"].into_iter()).is_empty());
        // Another process moved the version: the filter catches up from its own.
        assert_eq!(filters.check("LH", 2), Check::CatchUp { since: 0 });
        filters
            .catch_up("LH", 2, |add| {
                add("RR000000002DE");
                Ok(())
            })
            .unwrap();
        assert_eq!(filters.check("LH", 2), Check::Filter);
        assert_eq!(
            filters.maybe_held("LH", 2, ["RR000000002DE"].into_iter()),
            ["RR000000002DE"]
        );
        assert_eq!(filters.keys("LH"), 1);
        // A catch-up that fails part-way leaves no filter, and its memory counted back.
        let failed = filters.catch_up("LH", 3, |add| {
            (0..3 * FIRST_CAPACITY as u32).for_each(|i| add(&number(i)));
            anyhow::bail!("the store went away")
        });
        assert!(failed.is_err());
        assert_eq!(filters.check("LH", 3), Check::Store { rebuild: true });
        assert_eq!(filters.bytes, 0);
        filters
            .rebuild("LH", 2, 1, |add| {
                add("RR000000002DE");
                Ok(())
            })
            .unwrap();
        // A store behind the filter is not the one it was built from: rebuilt.
        assert_eq!(filters.check("LH", 1), Check::Store { rebuild: true });
        assert_eq!(filters.bytes, 0);
    }

    #[test]
    fn a_filter_built_from_the_store_takes_the_memory_of_tables_being_built() {
        let small = Part::new(FIRST_CAPACITY).bytes();
        let mut filters = Filters {
            max_bytes: 4 * small,
            ..Filters::default()
        };
        filters.rebuild("LH", 0, 0, |_| Ok(())).unwrap();
        let full: Vec<String> = (0..=FIRST_CAPACITY as u32).map(number).collect();
        filters.committed("LH", 0, 1, full.iter().map(String::as_str));
        assert!(filters.scan_due("LH", 1).is_some());
        assert_eq!(filters.bytes, 3 * small);
        // AF's filter needs twice the smallest: it fits once LH gives up its next table.
        filters.rebuild("AF", 0, 20_000, |_| Ok(())).unwrap();
        assert_eq!(filters.check("AF", 0), Check::Filter);
        assert_eq!(filters.state("LH"), Some((full.len(), FIRST_CAPACITY, false)));
        assert_eq!(filters.bytes, 3 * small);
        // LH goes on past full, and cannot start again while AF holds the memory.
        assert_eq!(
            filters.maybe_held("LH", 1, full.iter().map(String::as_str)).len(),
            full.len()
        );
        assert!(filters.scan_due("LH", 1).is_none());
    }

    #[test]
    fn past_the_memory_bound_a_carrier_is_read_from_the_store() {
        let mut filters = Filters {
            max_bytes: Part::new(FIRST_CAPACITY).bytes() * 2,
            ..Filters::default()
        };
        filters.rebuild("LH", 0, 10, |_| Ok(())).unwrap();
        // Three times the smallest filter's numbers: full, but a table of four times its size
        // would pass the bound, so it goes on past full.
        let added: Vec<String> = (0..3 * FIRST_CAPACITY as u32).map(number).collect();
        filters.committed("LH", 0, 1, added.iter().map(String::as_str));
        assert_eq!(filters.scan_due("LH", 1), None);
        assert_eq!(filters.check("LH", 1), Check::Filter);
        assert_eq!(
            filters.maybe_held("LH", 1, added.iter().map(String::as_str)).len(),
            added.len()
        );
        // Built from the store at that size, it does not fit.
        filters
            .rebuild("LH", 1, added.len(), |add| {
                added.iter().for_each(|t| add(t));
                Ok(())
            })
            .unwrap();
        assert_eq!(filters.check("LH", 1), Check::Store { rebuild: false });
        assert_eq!(filters.bytes, 0);
        // Too large from the start.
        filters.rebuild("AF", 0, 10 * FIRST_CAPACITY, |_| Ok(())).unwrap();
        assert_eq!(filters.check("AF", 0), Check::Store { rebuild: false });
    }
}
