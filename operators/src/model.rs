//! The validated manifest: what validation hands to risk scoring and duty assessment.

use crate::error::Issue;
use crate::rates::{Method, Month};
use crate::reference::{Country, Currency};
use crate::small::SmallList;
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// Package categories of the contract (`merchandise` when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Merchandise,
    Gift,
    Documents,
    ReturnedGoods,
    CommercialSample,
}

impl Category {
    pub fn parse(s: &str) -> Option<Category> {
        match s {
            "merchandise" => Some(Category::Merchandise),
            "gift" => Some(Category::Gift),
            "documents" => Some(Category::Documents),
            "returned_goods" => Some(Category::ReturnedGoods),
            "commercial_sample" => Some(Category::CommercialSample),
            _ => None,
        }
    }
}

/// The manifest header after validation. Echo fields keep what the carrier sent (when it was
/// a string) so every outcome can be traced back, even when the header is invalid.
#[derive(Debug, Clone, Default)]
pub struct Header<'a> {
    pub manifest_id: Option<&'a str>,
    pub carrier: Option<&'a str>,
    pub trip_number: Option<&'a str>,
    pub port_of_arrival: Option<&'a str>,
    pub departure_country: Option<Country>,
    /// US Eastern date of arrival: picks the regime and the month.
    pub arrival_date: Option<NaiveDate>,
    pub month: Option<Month>,
    /// Index of the regime in force (into `RateBook::regimes`).
    pub regime: Option<usize>,
    /// The method in force for this carrier and month (after checking the regime offers it).
    pub method: Method,
    /// Header errors: each rejects every package of the manifest.
    pub errors: Vec<Issue>,
    /// Header warnings: copied to every accepted package.
    pub warnings: Vec<Issue>,
}

/// One item line, checked and resolved: its USD value and the ad valorem rate that applies.
/// (`Default` only fills the unused slots of a [`SmallList`].)
#[derive(Debug, Clone, Copy, Default)]
pub struct Item<'a> {
    pub index: u32,
    pub description: &'a str,
    pub hts: Option<&'a str>,
    pub origin: Country,
    pub quantity: u32,
    pub value: Decimal,
    pub currency: Currency,
    /// Value in USD, rounded half-up to the cent.
    pub value_usd: Decimal,
    /// The ad valorem rate for this line under the regime in force.
    pub rate: Decimal,
}

/// One package after validation. `errors` empty means it is accepted.
#[derive(Debug, Clone)]
pub struct Package<'a> {
    pub index: u32,
    pub tracking_number: Option<&'a str>,
    pub category: Category,
    pub shipper_name: Option<&'a str>,
    pub shipper_country: Option<Country>,
    /// Identity of the shipper account (normalised name + country), for risk history.
    pub shipper_key: Option<u64>,
    /// Identity of the consignee (normalised name + postal code), for split shipments.
    pub consignee_key: Option<u64>,
    pub weight_kg: Option<Decimal>,
    /// In place up to two items (most packages), on the heap beyond.
    pub items: SmallList<Item<'a>, 2>,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    /// Byte offset of the package in the message, for the dead-letter record.
    pub raw_start: u32,
}

impl Package<'_> {
    pub fn accepted(&self) -> bool {
        self.errors.is_empty()
    }

    /// Sum of the items' USD values.
    pub fn value_usd(&self) -> Decimal {
        crate::money::sum_money(self.items.iter().map(|i| i.value_usd))
    }
}

/// A stable 64-bit key of normalised text parts, so `"Textil Versand GmbH"` and
/// `"TEXTIL  VERSAND GMBH"` are one account.
///
/// The parts are normalised to their *canonical bytes*: each char lowercased (Unicode rules),
/// only alphanumerics kept, in UTF-8, and a 0x1f after each part (so `["ab", "c"]` and
/// `["a", "bc"]` differ). The key is a hash of those bytes. Keys live only in memory (account
/// history, consignee counts), so the hash may change between releases; the canonical bytes
/// are what make two spellings one account.
pub fn account_key(parts: &[&str]) -> u64 {
    let mut h = KeyHasher::default();
    for part in parts {
        let bytes = part.as_bytes();
        if part.is_ascii() {
            for &b in bytes {
                // The same byte Unicode lowercasing gives for an ASCII char (0: not kept).
                h.push_or_skip(ASCII_KEY[usize::from(b)]);
            }
            h.push(PART_END);
            continue;
        }
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b.is_ascii() {
                h.push_or_skip(ASCII_KEY[usize::from(b)]);
                i += 1;
            } else if let (0xc3, Some(&second)) = (b, bytes.get(i + 1)) {
                // U+00C0 to U+00FF (Latin-1 letters): capitals lowercase to +0x20, the others
                // are lowercase already; × and ÷ are not alphanumeric. The same bytes as the
                // Unicode path below.
                match second {
                    0x97 | 0xb7 => {}
                    0x80..=0x9e => {
                        h.push(0xc3);
                        h.push(second + 0x20);
                    }
                    _ => {
                        h.push(0xc3);
                        h.push(second);
                    }
                }
                i += 2;
            } else {
                let c = part[i..].chars().next().unwrap_or_default();
                for lower in c.to_lowercase().filter(|c| c.is_alphanumeric()) {
                    let mut buf = [0u8; 4];
                    for &b in lower.encode_utf8(&mut buf).as_bytes() {
                        h.push(b);
                    }
                }
                i += c.len_utf8();
            }
        }
        h.push(PART_END);
    }
    h.finish()
}

/// Ends each part in the canonical bytes.
const PART_END: u8 = 0x1f;

/// For each ASCII byte: itself lowercased if alphanumeric, else 0 (and 0 for every other
/// byte, so any `u8` indexes it).
const ASCII_KEY: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

/// Hashes canonical bytes eight at a time: the bytes are gathered into a word, and each full
/// word is mixed in by one folded 64 × 64 → 128-bit multiply. Canonical bytes are never 0, so
/// a part-filled last word tells its own length. Byte-serial FNV-1a (one dependent multiply per
/// byte) cost ~4% of the operator core; this costs a shift and an OR per byte. Not keyed: like
/// FNV, it does not resist a sender choosing names to collide.
#[derive(Default)]
struct KeyHasher {
    h: u64,
    word: u64,
    filled: u32,
}

impl KeyHasher {
    const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
    const SEED: u64 = 0xcbf2_9ce4_8422_2325;

    /// Appends `b`, unless it is 0 (a byte normalisation drops).
    #[inline(always)]
    fn push_or_skip(&mut self, b: u8) {
        self.word |= u64::from(b) << (8 * self.filled);
        self.filled += u32::from(b != 0);
        if self.filled == 8 {
            self.mix();
        }
    }

    /// Appends `b` (never 0).
    #[inline(always)]
    fn push(&mut self, b: u8) {
        debug_assert_ne!(b, 0);
        self.push_or_skip(b);
    }

    #[inline(always)]
    fn mix(&mut self) {
        self.h = fold_mul(self.h ^ self.word ^ Self::SEED, Self::MUL);
        self.word = 0;
        self.filled = 0;
    }

    fn finish(mut self) -> u64 {
        if self.filled > 0 {
            self.mix();
        }
        fold_mul(self.h, Self::MUL ^ Self::SEED)
    }
}

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The canonical bytes as first defined: every char lowercased and filtered through
    /// Unicode tables, each part ended by 0x1f.
    fn canonical_bytes(parts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            for c in part
                .chars()
                .flat_map(char::to_lowercase)
                .filter(|c| c.is_alphanumeric())
            {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            out.push(PART_END);
        }
        out
    }

    /// The key of the canonical bytes, one byte at a time.
    fn unicode_key(parts: &[&str]) -> u64 {
        let mut h = KeyHasher::default();
        for b in canonical_bytes(parts) {
            h.push(b);
        }
        h.finish()
    }

    #[test]
    fn spacing_and_case_do_not_change_the_account() {
        assert_eq!(
            account_key(&["Textil Versand GmbH", "DE"]),
            account_key(&["TEXTIL  VERSAND GMBH", "de"])
        );
        assert_ne!(account_key(&["ab", "c"]), account_key(&["a", "bc"]));
        assert_ne!(account_key(&["ab"]), account_key(&["ab", ""]));
        assert_eq!(
            account_key(&["Müller & Söhne", "DE"]),
            unicode_key(&["MÜLLER & SÖHNE", "DE"])
        );
    }

    #[test]
    fn latin1_letters_hash_as_unicode_lowercasing_does() {
        for c in '\u{c0}'..='\u{ff}' {
            let s = format!("a{c}B{c}");
            assert_eq!(account_key(&[&s, "DE"]), unicode_key(&[&s, "DE"]), "{c}");
        }
    }

    /// Distinct canonical bytes of every length 0–40 (so every fill of the last word) give
    /// distinct keys.
    #[test]
    fn distinct_canonical_bytes_give_distinct_keys() {
        let mut seen = std::collections::HashMap::new();
        for len in 0..=40usize {
            for &letter in b"a0z9" {
                // Words of one repeated letter, and the same with one letter changed at each place.
                for at in 0..=len {
                    let mut text: Vec<u8> = vec![b'k'; len];
                    if at < len {
                        text[at] = letter;
                    }
                    let text = String::from_utf8(text).expect("ASCII");
                    let key = account_key(&[&text]);
                    let canonical = canonical_bytes(&[&text]);
                    if let Some(previous) = seen.insert(key, canonical.clone()) {
                        assert_eq!(previous, canonical, "two texts share a key");
                    }
                }
            }
        }
        assert!(seen.len() > 3_000, "{} distinct texts", seen.len());
    }

    proptest! {
        #[test]
        fn latin1_text_matches_unicode_lowercasing(a in "[a-zA-Z \u{c0}-\u{ff}\u{100}-\u{17f}\u{2028}]{0,20}") {
            prop_assert_eq!(account_key(&[&a, "x"]), unicode_key(&[&a, "x"]));
        }

        #[test]
        fn ascii_fast_path_matches_unicode_lowercasing(a in "[ -~]{0,40}", b in "\\PC{0,20}") {
            prop_assert_eq!(account_key(&[&a, &b]), unicode_key(&[&a, &b]));
            prop_assert_eq!(account_key(&[&a]), unicode_key(&[&a]));
        }
    }
}
