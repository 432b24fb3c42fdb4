//! Which tracking numbers a carrier certainly does not have in the store: a Bloom filter per
//! carrier, kept in memory by the process that commits, so that the 12-month duplicate check
//! reads the store only for the numbers the filter may hold (175 of 100,000 absent numbers in
//! the unit test below), instead of searching every run of the carrier for every number.
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
//! Memory is bounded by [`MAX_BYTES`] over all carriers (at least 12 bits per number, 16 once the
//! blocks round up to a power of two, and parts that double may be half empty: 17–34 MB per 10 M
//! numbers); a carrier whose filter would pass it is searched in the store for every number from
//! then on.

use std::collections::HashMap;

/// Bits of filter per number at least (a part's blocks round up to a power of two), with 8 bits
/// set per number in one 512-bit block.
const BITS_PER_KEY: usize = 12;
const BITS_SET: u32 = 8;
/// Numbers the first part of a carrier's filter holds; each further part holds twice the last.
const FIRST_CAPACITY: usize = 1 << 14;
/// The most memory all carriers' filters may take.
pub(super) const MAX_BYTES: usize = 64 << 20;

/// A blocked Bloom filter: each number sets [`BITS_SET`] bits within one 64-byte block, so a
/// lookup touches one cache line.
struct Part {
    blocks: Vec<[u64; 8]>,
    keys: usize,
    capacity: usize,
}

impl Part {
    fn new(capacity: usize) -> Self {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512).next_power_of_two();
        Part {
            blocks: vec![[0; 8]; blocks],
            keys: 0,
            capacity,
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

/// One carrier's filter: parts of growing size, the numbers going to the last.
struct CarrierFilter {
    /// The carrier's `numbers_version` this filter holds every number of.
    version: i64,
    parts: Vec<Part>,
}

impl CarrierFilter {
    fn may_contain(&self, h: u64) -> bool {
        self.parts.iter().any(|p| p.may_contain(h))
    }
}

/// What this process knows of a carrier.
enum Known {
    Filter(CarrierFilter),
    /// Read from the store for good: its filter went stale after it was built (another process
    /// commits its numbers), or would take more than the memory left.
    StoreOnly,
}

/// The filters of every carrier this process has committed.
pub(crate) struct Filters {
    carriers: HashMap<String, Known>,
    bytes: usize,
    /// [`MAX_BYTES`], smaller in tests.
    max_bytes: usize,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            carriers: HashMap::new(),
            bytes: 0,
            max_bytes: MAX_BYTES,
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

impl CarrierFilter {
    /// Adds a number, growing by a part twice the last when the last is full; returns the bytes
    /// it grew by.
    fn insert_one(&mut self, t: &str) -> usize {
        let last = self.parts.last().expect("a filter has a part");
        let mut grown = 0;
        if last.keys >= last.capacity {
            let part = Part::new(last.capacity * 2);
            grown = part.bytes();
            self.parts.push(part);
        }
        self.parts.last_mut().expect("a filter has a part").insert(hash(t));
        grown
    }
}

impl Filters {
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
            Some(Known::Filter(f)) if f.version == version => numbers.filter(|t| f.may_contain(hash(t))).collect(),
            _ => numbers.collect(),
        }
    }

    /// Builds `carrier`'s filter from the `count` numbers the store holds of it at `version`,
    /// which `fill` hands over one by one.
    pub(super) fn rebuild(
        &mut self,
        carrier: &str,
        version: i64,
        count: usize,
        fill: impl FnOnce(&mut dyn FnMut(&str)) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.forget(carrier);
        let mut part = Part::new(count.max(FIRST_CAPACITY));
        if self.bytes + part.bytes() > self.max_bytes {
            self.carriers.insert(carrier.to_string(), Known::StoreOnly);
            return Ok(());
        }
        fill(&mut |t| part.insert(hash(t)))?;
        self.bytes += part.bytes();
        let f = CarrierFilter {
            version,
            parts: vec![part],
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
        let mut grown = 0;
        let filled = fill(&mut |t| grown += f.insert_one(t));
        if filled.is_ok() {
            f.version = version;
        }
        self.grew(carrier, grown);
        if filled.is_err() {
            // Part of the numbers: no longer complete for any version.
            self.forget(carrier);
        }
        filled
    }

    /// How many numbers `carrier`'s filter holds (0 without one).
    pub(super) fn keys(&self, carrier: &str) -> usize {
        match self.carriers.get(carrier) {
            Some(Known::Filter(f)) => f.parts.iter().map(|p| p.keys).sum(),
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
        let grown = added.map(|t| f.insert_one(t)).sum();
        f.version = version;
        self.grew(carrier, grown);
    }

    /// Counts what `carrier`'s filter grew by; past the bound, the carrier is read from the store.
    fn grew(&mut self, carrier: &str, bytes: usize) {
        self.bytes += bytes;
        if self.bytes > self.max_bytes {
            self.forget(carrier);
            self.carriers.insert(carrier.to_string(), Known::StoreOnly);
        }
    }

    fn forget(&mut self, carrier: &str) {
        if let Some(Known::Filter(f)) = self.carriers.remove(carrier) {
            self.bytes -= f.parts.iter().map(Part::bytes).sum::<usize>();
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
        // Grown past its first part by later batches.
        let added: Vec<String> = (50_000..200_000).map(number).collect();
        filters.committed("LH", 3, 4, added.iter().map(String::as_str));
        assert_eq!(filters.check("LH", 4), Check::Filter);
        let held: Vec<String> = (0..200_000).map(number).collect();
        assert_eq!(
            filters.maybe_held("LH", 4, held.iter().map(String::as_str)).len(),
            held.len()
        );
        let absent: Vec<String> = (1_000_000..1_100_000).map(number).collect();
        let passed = filters.maybe_held("LH", 4, absent.iter().map(String::as_str)).len();
        // ~0.17% by the filter's design (175 with this hash); a hash that spread the numbers'
        // bits badly would pass many more.
        assert!(passed < 500, "{passed} of 100,000 absent numbers passed");
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
    fn past_the_memory_bound_a_carrier_is_read_from_the_store() {
        let mut filters = Filters {
            max_bytes: Part::new(FIRST_CAPACITY).bytes() * 2,
            ..Filters::default()
        };
        filters.rebuild("LH", 0, 10, |_| Ok(())).unwrap();
        // Three times the first part's numbers: a second part of twice its size passes the bound.
        let added: Vec<String> = (0..3 * FIRST_CAPACITY as u32).map(number).collect();
        filters.committed("LH", 0, 1, added.iter().map(String::as_str));
        assert_eq!(filters.check("LH", 1), Check::Store { rebuild: false });
        assert_eq!(filters.bytes, 0);
        // Too large from the start.
        filters.rebuild("AF", 0, 10 * FIRST_CAPACITY, |_| Ok(())).unwrap();
        assert_eq!(filters.check("AF", 0), Check::Store { rebuild: false });
    }
}
