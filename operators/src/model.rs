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
#[derive(Debug, Clone, Default)]
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

/// A stable 64-bit key of normalised text parts (FNV-1a over lowercase alphanumerics), so
/// `"Textil Versand GmbH"` and `"TEXTIL  VERSAND GMBH"` are one account.
pub fn account_key(parts: &[&str]) -> u64 {
    let mut h: u64 = FNV_OFFSET;
    for part in parts {
        let bytes = part.as_bytes();
        if part.is_ascii() {
            for &b in bytes {
                // The same byte Unicode lowercasing gives for an ASCII char (0: not kept).
                let lower = ASCII_KEY[usize::from(b)];
                if lower != 0 {
                    h = fnv(h, lower);
                }
            }
            h = fnv(h, 0x1f);
            continue;
        }
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b.is_ascii() {
                // The same byte Unicode lowercasing gives for an ASCII char (0: not kept).
                let lower = ASCII_KEY[b as usize];
                if lower != 0 {
                    h = fnv(h, lower);
                }
                i += 1;
            } else if let (0xc3, Some(&second)) = (b, bytes.get(i + 1)) {
                // U+00C0 to U+00FF (Latin-1 letters): capitals lowercase to +0x20, the others
                // are lowercase already; × and ÷ are not alphanumeric. The same bytes as the
                // Unicode path below.
                match second {
                    0x97 | 0xb7 => {}
                    0x80..=0x9e => {
                        h = fnv(h, 0xc3);
                        h = fnv(h, second + 0x20);
                    }
                    _ => {
                        h = fnv(h, 0xc3);
                        h = fnv(h, second);
                    }
                }
                i += 2;
            } else {
                let c = part[i..].chars().next().unwrap_or_default();
                for lower in c.to_lowercase().filter(|c| c.is_alphanumeric()) {
                    let mut buf = [0u8; 4];
                    for &b in lower.encode_utf8(&mut buf).as_bytes() {
                        h = fnv(h, b);
                    }
                }
                i += c.len_utf8();
            }
        }
        h = fnv(h, 0x1f);
    }
    h
}

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

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[inline(always)]
fn fnv(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The key as first written: every char lowercased and filtered through Unicode tables.
    fn unicode_key(parts: &[&str]) -> u64 {
        let mut h = FNV_OFFSET;
        for part in parts {
            for c in part
                .chars()
                .flat_map(char::to_lowercase)
                .filter(|c| c.is_alphanumeric())
            {
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    h = fnv(h, b);
                }
            }
            h = fnv(h, 0x1f);
        }
        h
    }

    #[test]
    fn spacing_and_case_do_not_change_the_account() {
        assert_eq!(
            account_key(&["Textil Versand GmbH", "DE"]),
            account_key(&["TEXTIL  VERSAND GMBH", "de"])
        );
        assert_ne!(account_key(&["ab", "c"]), account_key(&["a", "bc"]));
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
