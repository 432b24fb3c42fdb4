//! Risk scoring: an explainable score from 0 to 100 with reason codes.
//!
//! Signals on the manifest alone (transshipment, undervaluation, vague descriptions, gifts
//! above the exemption, split shipments) are computed in parallel with everything else.
//! Signals on account history (first-time shipper, shipper and carrier rejection rates) need
//! the outcomes of earlier packages, so they are applied in one ordered pass by
//! [`AccountHistory`], which keeps a bounded amount of memory.

use crate::duty::Duty;
use crate::model::{Category, Header, Package};
use crate::money::{cmp_amounts, less_than_product};
use crate::rates::{Basis, RateBook};
use crate::table::{parse_dec, DataError, DataFile};
use ahash::AHashMap;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::path::Path;

/// Reason codes of risk findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Transshipment,
    TariffArbitrageRoute,
    Undervaluation,
    VagueDescription,
    GiftAboveExemption,
    SplitShipment,
    FirstTimeShipper,
    ShipperRejectionRate,
    CarrierRejectionRate,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Transshipment => "TRANSSHIPMENT",
            Reason::TariffArbitrageRoute => "TARIFF_ARBITRAGE_ROUTE",
            Reason::Undervaluation => "UNDERVALUATION",
            Reason::VagueDescription => "VAGUE_DESCRIPTION",
            Reason::GiftAboveExemption => "GIFT_ABOVE_EXEMPTION",
            Reason::SplitShipment => "SPLIT_SHIPMENT",
            Reason::FirstTimeShipper => "FIRST_TIME_SHIPPER",
            Reason::ShipperRejectionRate => "SHIPPER_REJECTION_RATE",
            Reason::CarrierRejectionRate => "CARRIER_REJECTION_RATE",
        }
    }
}

/// Risk tiers, from the score and the configured thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Low,
    Medium,
    High,
    Critical,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Low, Tier::Medium, Tier::High, Tier::Critical];
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
            Tier::Critical => "critical",
        }
    }
}

/// A package's risk: every finding with its points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Risk {
    pub reasons: Vec<(Reason, u8)>,
}

impl Risk {
    pub fn add(&mut self, reason: Reason, points: u8) {
        if points > 0 {
            self.reasons.push((reason, points));
        }
    }
    pub fn score(&self) -> u8 {
        self.reasons.iter().map(|&(_, p)| u32::from(p)).sum::<u32>().min(100) as u8
    }
    pub fn tier(&self, cfg: &RiskConfig) -> Tier {
        let s = self.score();
        if s >= cfg.tiers.critical {
            Tier::Critical
        } else if s >= cfg.tiers.high {
            Tier::High
        } else if s >= cfg.tiers.medium {
            Tier::Medium
        } else {
            Tier::Low
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    pub medium: u8,
    pub high: u8,
    pub critical: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    tiers: Tiers,
    transshipment: TransshipmentDoc,
    undervaluation: UndervaluationDoc,
    vague_description: VagueDoc,
    gift_above_exemption: Points,
    split_shipment: SplitDoc,
    first_time_shipper: Points,
    shipper_rejections: RejectionsDoc,
    carrier_rejections: RejectionsDoc,
    history: HistoryDoc,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Points {
    points: u8,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransshipmentDoc {
    points: u8,
    rate_gap: String,
    rate_gap_points: u8,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UndervaluationDoc {
    fraction_of_norm: String,
    points: u8,
    min_weight_kg: String,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VagueDoc {
    points: u8,
    words: Vec<String>,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitDoc {
    min_packages: u32,
    points: u8,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectionsDoc {
    min_packages: u32,
    rate: String,
    points: u8,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryDoc {
    max_shippers: usize,
    max_carriers: usize,
    shipper_decay: String,
    carrier_decay: String,
}

/// Thresholds of one rejection-rate signal.
#[derive(Debug, Clone)]
pub struct RejectionRule {
    pub min_packages: f64,
    pub rate: f64,
    pub points: u8,
}

/// Risk weights and thresholds, from `config/risk/`.
#[derive(Debug, Clone)]
pub struct RiskConfig {
    pub tiers: Tiers,
    transshipment_points: u8,
    rate_gap: Decimal,
    rate_gap_points: u8,
    under_points: u8,
    under_min_weight: Decimal,
    /// USD per kg by HTS chapter (index 1..=97); index 0 is the default.
    norms: [Decimal; 98],
    /// The norm [`RiskConfig::norm_for`] picks times `undervaluation.fraction_of_norm`, by chapter index (0: the
    /// default), multiplied once at load.
    under_norms: [Decimal; 98],
    vague_points: u8,
    vague_words: Vec<String>,
    /// The same words by length in bytes (index), for ASCII descriptions.
    vague_by_len: Vec<Vec<String>>,
    /// For each length (index): bit `i` set when a word of that length starts with the letter
    /// `a + i`; bit 31 when one starts with anything else. Most tokens are settled by it
    /// without comparing text.
    vague_initials: Vec<u32>,
    gift_points: u8,
    split_min: u32,
    split_points: u8,
    first_time_points: u8,
    shipper_rule: RejectionRule,
    carrier_rule: RejectionRule,
    max_shippers: usize,
    max_carriers: usize,
    shipper_decay: f64,
    carrier_decay: f64,
}

impl RiskConfig {
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let file = DataFile::read(&dir.join("risk/risk.toml"))?;
        let doc: Doc = file.toml()?;
        let dec = |s: &str, what: &str| {
            crate::money::parse_decimal(s, 12, false)
                .map_err(|e| DataError::file(&file.path, format!("{what} {}", e.describe(s))))
        };
        let t = &doc.tiers;
        if !(t.medium < t.high && t.high < t.critical && t.critical <= 100) {
            return Err(DataError::file(
                &file.path,
                "tiers must satisfy medium < high < critical <= 100",
            ));
        }
        let decay = |s: &str, what: &str| -> Result<f64, DataError> {
            let d = dec(s, what)?.to_f64().unwrap_or(0.0);
            if d > 0.0 && d < 1.0 {
                Ok(d)
            } else {
                Err(DataError::file(
                    &file.path,
                    format!("{what} must be between 0 and 1 (exclusive)"),
                ))
            }
        };
        let shipper_decay = decay(&doc.history.shipper_decay, "history.shipper_decay")?;
        let carrier_decay = decay(&doc.history.carrier_decay, "history.carrier_decay")?;
        let rule = |r: &RejectionsDoc, decay: f64, what: &str| -> Result<RejectionRule, DataError> {
            let min = f64::from(r.min_packages);
            if min >= 1.0 / (1.0 - decay) {
                return Err(DataError::file(
                    &file.path,
                    format!(
                        "{what}.min_packages {} can never be reached with its decay (at most {:.0})",
                        r.min_packages,
                        1.0 / (1.0 - decay)
                    ),
                ));
            }
            Ok(RejectionRule {
                min_packages: min,
                rate: dec(&r.rate, what)?.to_f64().unwrap_or(1.0),
                points: r.points,
            })
        };

        let norms_file = DataFile::read(&dir.join("risk/value_norms.csv"))?;
        let mut norms = [Decimal::ZERO; 98];
        for row in norms_file.csv(&["hts_chapter", "usd_per_kg", "description"])? {
            let value = parse_dec(&norms_file, row.line, row.fields[1], "usd_per_kg")?;
            let idx = if row.fields[0] == "*" {
                0
            } else {
                match row.fields[0].parse::<usize>() {
                    Ok(c) if (1..=97).contains(&c) && row.fields[0].len() == 2 => c,
                    _ => {
                        return Err(norms_file.err(
                            row.line,
                            format!("hts_chapter `{}` must be 01 to 97 or *", row.fields[0]),
                        ))
                    }
                }
            };
            norms[idx] = value;
        }
        if norms[0].is_zero() {
            return Err(DataError::file(
                &norms_file.path,
                "a default row (hts_chapter *) with a positive usd_per_kg is required",
            ));
        }
        let under_fraction = dec(&doc.undervaluation.fraction_of_norm, "undervaluation.fraction_of_norm")?;
        let under_norms = std::array::from_fn(|c| {
            let norm = if norms[c].is_zero() { norms[0] } else { norms[c] };
            norm * under_fraction
        });
        let vague_words: Vec<String> = doc.vague_description.words.iter().map(|w| w.to_lowercase()).collect();
        Ok(RiskConfig {
            tiers: doc.tiers.clone(),
            transshipment_points: doc.transshipment.points,
            rate_gap: dec(&doc.transshipment.rate_gap, "transshipment.rate_gap")?,
            rate_gap_points: doc.transshipment.rate_gap_points,
            under_norms,
            under_points: doc.undervaluation.points,
            under_min_weight: dec(&doc.undervaluation.min_weight_kg, "undervaluation.min_weight_kg")?,
            norms,
            vague_points: doc.vague_description.points,
            vague_by_len: vague_words.iter().fold(Vec::new(), |mut by_len: Vec<Vec<String>>, w| {
                if by_len.len() <= w.len() {
                    by_len.resize(w.len() + 1, Vec::new());
                }
                by_len[w.len()].push(w.clone());
                by_len
            }),
            vague_initials: vague_words.iter().fold(Vec::new(), |mut initials: Vec<u32>, w| {
                if initials.len() <= w.len() {
                    initials.resize(w.len() + 1, 0);
                }
                initials[w.len()] |= w.as_bytes().first().map_or(1 << 31, |&b| initial_bit(b));
                initials
            }),
            vague_words,
            gift_points: doc.gift_above_exemption.points,
            split_min: doc.split_shipment.min_packages.max(2),
            split_points: doc.split_shipment.points,
            first_time_points: doc.first_time_shipper.points,
            shipper_rule: rule(&doc.shipper_rejections, shipper_decay, "shipper_rejections")?,
            carrier_rule: rule(&doc.carrier_rejections, carrier_decay, "carrier_rejections")?,
            max_shippers: doc.history.max_shippers.max(2),
            max_carriers: doc.history.max_carriers.max(1),
            shipper_decay,
            carrier_decay,
        })
    }

    /// A description made only of vague words (and digits or punctuation).
    pub fn is_vague(&self, description: &str) -> bool {
        // ASCII: words are the runs of ASCII alphanumerics (what `char::is_alphanumeric`
        // gives on ASCII), so no char decoding; most descriptions stop at their first word.
        // At the first non-ASCII byte (it may belong to a word) the Unicode reading decides.
        let b = description.as_bytes();
        let mut any_word = false;
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_alphanumeric() {
                if !b[i].is_ascii() {
                    return self.is_vague_unicode(description);
                }
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if i < b.len() && !b[i].is_ascii() {
                return self.is_vague_unicode(description);
            }
            let token = &b[start..i];
            if token.iter().all(u8::is_ascii_digit) {
                continue;
            }
            // Only words of the token's length can be equal to it.
            // The words are lowercase: the first byte settles most comparisons.
            let first = token[0].to_ascii_lowercase();
            let initials = self.vague_initials.get(token.len()).copied().unwrap_or(0);
            if initials & initial_bit(first) == 0 {
                return false;
            }
            let same_length = self.vague_by_len.get(token.len()).map_or(&[][..], Vec::as_slice);
            if !same_length
                .iter()
                .any(|w| w.as_bytes()[0] == first && w.as_bytes().eq_ignore_ascii_case(token))
            {
                return false;
            }
            any_word = true;
        }
        any_word
    }

    /// [`RiskConfig::is_vague`] for any text.
    fn is_vague_unicode(&self, description: &str) -> bool {
        let mut any_word = false;
        for token in description
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
        {
            if token.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if !self.vague_words.iter().any(|w| w.eq_ignore_ascii_case(token)) {
                return false;
            }
            any_word = true;
        }
        any_word
    }

    /// The value norm (USD per kg) of the goods of an HTS number: its chapter's, else the
    /// default.
    pub fn norm_for(&self, hts: Option<&str>) -> Decimal {
        match self.norms[chapter_index(hts)] {
            n if n.is_zero() => self.norms[0],
            n => n,
        }
    }

    /// Findings on the manifest alone, for an accepted package and its duty.
    pub fn score_static(
        &self,
        rates: &RateBook,
        header: &Header<'_>,
        pkg: &Package<'_>,
        duty: &Duty<'_>,
        consignee_count: u32,
    ) -> Risk {
        let mut risk = Risk::default();
        // Transshipment: shipped from a third country, none of whose goods are in the package.
        if let (Some(dep), Some(ship)) = (header.departure_country, pkg.shipper_country) {
            if dep != ship && pkg.items.iter().all(|i| i.origin != dep) {
                risk.add(Reason::Transshipment, self.transshipment_points);
                let regime = &rates.regimes[duty.regime];
                if let (Basis::OriginTable, Some(date)) = (&regime.basis, header.arrival_date) {
                    let highest = pkg.items.iter().map(|i| i.rate).max().unwrap_or_default();
                    if let Some(route_rate) = regime.origin_rate(dep, date) {
                        if highest - route_rate >= self.rate_gap {
                            risk.add(Reason::TariffArbitrageRoute, self.rate_gap_points);
                        }
                    }
                }
            }
        }
        // Undervaluation: value per kg far below the norm of the goods' HTS chapter.
        if let Some(w) = pkg.weight_kg.filter(|w| cmp_amounts(*w, self.under_min_weight).is_ge()) {
            // The last of the most valuable lines, as `max_by_key` picks it.
            let main = pkg
                .items
                .iter()
                .max_by(|a, b| cmp_amounts(a.value_usd, b.value_usd))
                .and_then(|i| i.hts);
            // value < norm × fraction × w, the product multiplied left to right as written.
            if less_than_product(duty.value_usd, self.under_norms[chapter_index(main)], w) {
                risk.add(Reason::Undervaluation, self.under_points);
            }
        }
        if pkg.items.iter().any(|i| self.is_vague(i.description)) {
            risk.add(Reason::VagueDescription, self.vague_points);
        }
        if pkg.category == Category::Gift && duty.exemption.is_none() {
            risk.add(Reason::GiftAboveExemption, self.gift_points);
        }
        if consignee_count >= self.split_min {
            risk.add(Reason::SplitShipment, self.split_points);
        }
        risk
    }

    pub fn split_min(&self) -> u32 {
        self.split_min
    }
}

/// The bit of a word's first byte in `RiskConfig::vague_initials`: `a` to `z` have their own,
/// every other byte shares bit 31.
#[inline]
fn initial_bit(b: u8) -> u32 {
    match b {
        b'a'..=b'z' => 1 << (b - b'a'),
        _ => 1 << 31,
    }
}

/// The chapter of an HTS number as an index into the norms (1 to 97), or 0 (the default).
fn chapter_index(hts: Option<&str>) -> usize {
    hts.and_then(|h| h.get(..2))
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| (1..=97).contains(c))
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    seen: f64,
    rejected: f64,
}

impl Stats {
    fn record(&mut self, rejected: bool, decay: f64) {
        self.seen = self.seen * decay + 1.0;
        self.rejected = self.rejected * decay + if rejected { 1.0 } else { 0.0 };
    }
    fn flags(&self, rule: &RejectionRule) -> bool {
        self.seen >= rule.min_packages && self.rejected / self.seen >= rule.rate
    }
}

/// Recent history of shipper and carrier accounts, in bounded memory.
///
/// Shippers are kept in two generations of at most `max_shippers / 2` each: when the newest
/// fills, the oldest is dropped. An account seen recently is always in one of them.
pub struct AccountHistory {
    newest: AHashMap<u64, Stats>,
    oldest: AHashMap<u64, Stats>,
    carriers: AHashMap<String, Stats>,
}

/// What history says about one package, before its own outcome is recorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryView {
    pub first_time_shipper: bool,
    pub shipper_flagged: bool,
    pub carrier_flagged: bool,
}

impl Default for AccountHistory {
    fn default() -> Self {
        AccountHistory {
            newest: AHashMap::new(),
            oldest: AHashMap::new(),
            carriers: AHashMap::new(),
        }
    }
}

impl AccountHistory {
    /// Looks up a package's accounts without changing anything.
    pub fn view(&self, cfg: &RiskConfig, carrier: Option<&str>, shipper: Option<u64>) -> HistoryView {
        HistoryView {
            carrier_flagged: self.carrier_flagged(cfg, carrier),
            ..self.shipper_view(cfg, shipper)
        }
    }

    /// [`AccountHistory::view`] of the shipper alone (`carrier_flagged` false).
    pub fn shipper_view(&self, cfg: &RiskConfig, shipper: Option<u64>) -> HistoryView {
        let shipper_stats = shipper.and_then(|k| self.newest.get(&k).or_else(|| self.oldest.get(&k)));
        HistoryView {
            first_time_shipper: shipper.is_some() && shipper_stats.is_none(),
            shipper_flagged: shipper_stats.is_some_and(|s| s.flags(&cfg.shipper_rule)),
            carrier_flagged: false,
        }
    }

    /// Whether the carrier's rejection rate flags its packages.
    pub fn carrier_flagged(&self, cfg: &RiskConfig, carrier: Option<&str>) -> bool {
        carrier
            .and_then(|c| self.carriers.get(c))
            .is_some_and(|s| s.flags(&cfg.carrier_rule))
    }

    /// Adds the history findings of `view` to a risk.
    pub fn apply(cfg: &RiskConfig, view: HistoryView, risk: &mut Risk) {
        if view.first_time_shipper {
            risk.add(Reason::FirstTimeShipper, cfg.first_time_points);
        }
        if view.shipper_flagged {
            risk.add(Reason::ShipperRejectionRate, cfg.shipper_rule.points);
        }
        if view.carrier_flagged {
            risk.add(Reason::CarrierRejectionRate, cfg.carrier_rule.points);
        }
    }

    /// Records one package's outcome.
    pub fn record(&mut self, cfg: &RiskConfig, carrier: Option<&str>, shipper: Option<u64>, rejected: bool) {
        self.record_shipper(cfg, shipper, rejected);
        self.record_carrier(cfg, carrier, [rejected]);
    }

    /// Records one package's outcome for its shipper.
    pub fn record_shipper(&mut self, cfg: &RiskConfig, shipper: Option<u64>, rejected: bool) {
        if let Some(k) = shipper {
            let stats = match self.newest.get_mut(&k) {
                Some(s) => s,
                None => {
                    if self.newest.len() >= cfg.max_shippers / 2 {
                        self.oldest = std::mem::take(&mut self.newest);
                    }
                    let carried = self.oldest.remove(&k).unwrap_or_default();
                    self.newest.entry(k).or_insert(carried)
                }
            };
            stats.record(rejected, cfg.shipper_decay);
        }
    }

    /// Records the outcomes of packages of one carrier, in order: the carrier is looked up
    /// once (a carrier not yet known is added while there is room, as by
    /// [`AccountHistory::record`]).
    pub fn record_carrier(
        &mut self,
        cfg: &RiskConfig,
        carrier: Option<&str>,
        rejected: impl IntoIterator<Item = bool>,
    ) {
        let Some(c) = carrier else {
            return;
        };
        let mut rejected = rejected.into_iter().peekable();
        if rejected.peek().is_none() {
            return;
        }
        if !self.carriers.contains_key(c) {
            if self.carriers.len() >= cfg.max_carriers {
                return;
            }
            self.carriers.insert(c.to_string(), Stats::default());
        }
        if let Some(s) = self.carriers.get_mut(c) {
            for r in rejected {
                s.record(r, cfg.carrier_decay);
            }
        }
    }

    /// Number of shippers currently remembered.
    pub fn shippers(&self) -> usize {
        self.newest.len() + self.oldest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> RiskConfig {
        RiskConfig::load(&crate::config_dir_for_tests()).unwrap()
    }

    #[test]
    fn vague_descriptions() {
        let cfg = config();
        for (text, vague) in [
            ("Gift", true),
            ("gifts, 2 PARTS", true),
            ("3 samples!", true),
            ("3 x sample!", false),
            ("123", false),
            ("", false),
            ("Toy car set", false),
            ("gift\u{e9}", false),
            ("gift\u{a0}items", true),
        ] {
            assert_eq!(cfg.is_vague(text), vague, "{text:?}");
            assert_eq!(cfg.is_vague_unicode(text), vague, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn ascii_words_are_split_as_unicode_words(
            words in proptest::collection::vec(prop_oneof![
                Just("gift".to_string()), Just("Parts".to_string()), Just("ITEMS".to_string()),
                Just("Samples".to_string()), Just("misc".to_string()), Just("sPare".to_string()), Just("Gifts".to_string()),
                "[0-9]{1,3}", "[a-zA-Z]{1,6}", "[\u{e9}\u{df}\u{4e2d}\u{a0}\u{2028}]{1,2}", "[ -/:-@\\[-`{-~]{1,3}",
            ], 0..6),
        ) {
            let text = words.concat();
            let cfg = config();
            prop_assert_eq!(cfg.is_vague(&text), cfg.is_vague_unicode(&text), "{:?}", text);
        }
    }
}
