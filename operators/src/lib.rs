//! dutyflow's operators: pure domain logic, with no Kafka, no database and no async runtime.
//!
//! The path of one message reads top to bottom in [`Operators::assess_message`]:
//! decode → validate → assess duty → score risk (manifest signals), then
//! [`Operators::apply_history`] adds account-history signals in input order, and [`encode`]
//! writes `assessment/v1`.

pub mod calendar;
pub mod cpu;
pub mod decode;
pub mod duty;
pub mod encode;
pub mod error;
pub mod model;
pub mod money;
pub mod outcome;
pub mod rates;
pub mod reference;
pub mod risk;
pub mod small;
pub mod table;
pub mod validate;

use ahash::AHashMap;
use calendar::PaymentCalendar;
use decode::Decoder;
use outcome::{ManifestOutcome, Outcome, PackageOutcome};
use rates::RateBook;
use reference::Reference;
use risk::{AccountHistory, HistoryView, RiskConfig};
use std::path::{Path, PathBuf};
pub use table::DataError;

/// All reference data, rates and risk settings, loaded and checked once at start.
pub struct Operators {
    pub reference: Reference,
    pub rates: RateBook,
    pub risk: RiskConfig,
    pub calendar: PaymentCalendar,
    pub config_dir: PathBuf,
}

impl Operators {
    /// Loads every data file under `dir` (normally `config/`); the first problem found is
    /// returned with its file and line.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let reference = Reference::load(dir)?;
        let rates = RateBook::load(dir, &reference)?;
        Ok(Operators {
            risk: RiskConfig::load(dir)?,
            calendar: PaymentCalendar::load(dir)?,
            reference,
            rates,
            config_dir: dir.to_path_buf(),
        })
    }

    /// Decodes, validates, assesses and scores one message. `raw` stays untouched; `scratch`
    /// receives the copy that the JSON parser rewrites.
    pub fn assess_message<'a>(&self, decoder: &mut Decoder, raw: &'a [u8], scratch: &'a mut Vec<u8>) -> Outcome<'a> {
        let manifest = match decoder.decode(raw, scratch) {
            Ok(m) => m,
            Err(issue) => return Outcome::Message(issue),
        };
        let header = validate::header(self, &manifest);
        // Each package's outcome is built where it stays: validated into its slot, then
        // assessed and scored in place (a package with its items is a few hundred bytes).
        let mut packages: Vec<PackageOutcome<'a>> = manifest
            .packages
            .iter()
            .enumerate()
            .map(|(i, raw_pkg)| PackageOutcome {
                package: validate::unchecked_package(i, raw_pkg),
                duty: None,
                risk: None,
            })
            .collect();
        for (PackageOutcome { package, .. }, raw_pkg) in packages.iter_mut().zip(&manifest.packages) {
            validate::package_into(self, &header, raw_pkg, &manifest.items, package);
            if !header.errors.is_empty() {
                package.errors.splice(0..0, header.errors.iter().cloned());
            }
        }
        validate::mark_duplicates_of(packages.iter_mut().map(|p| &mut p.package));

        let consignees = self.consignee_counts(&packages);
        for p in packages.iter_mut().filter(|p| p.accepted()) {
            let package = &mut p.package;
            package.warnings.extend(header.warnings.iter().cloned());
            duty::assess_into(&self.rates.regimes, &header, package, &mut p.duty);
            let count = package
                .consignee_key
                .and_then(|k| consignees.get(&k).copied())
                .unwrap_or(1);
            p.risk = p
                .duty
                .as_ref()
                .map(|d| self.risk.score_static(&self.rates, &header, package, d, count));
        }
        Outcome::Manifest(ManifestOutcome {
            packages_at: manifest.packages_at,
            header,
            packages,
        })
    }

    fn consignee_counts(&self, packages: &[PackageOutcome<'_>]) -> AHashMap<u64, u32> {
        let mut counts = AHashMap::new();
        if packages.len() as u32 >= self.risk.split_min() {
            // Sized once: growing from empty rehashed the table several times per manifest.
            counts.reserve(packages.len());
            for k in packages.iter().filter_map(|p| p.package.consignee_key) {
                *counts.entry(k).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Adds account-history findings and records every package's outcome. Must be called on
    /// outcomes in input order (it is the only order-dependent step).
    pub fn apply_history(&self, history: &mut AccountHistory, outcome: &mut Outcome<'_>) {
        let Outcome::Manifest(m) = outcome else {
            return;
        };
        let carrier = m.header.carrier.filter(|_| m.header.errors.is_empty());
        // Every view is taken before this manifest's outcomes are recorded (a shipper may
        // appear twice); the carrier is the same for every package.
        let carrier_flagged = history.carrier_flagged(&self.risk, carrier);
        for p in m.packages.iter_mut() {
            if let Some(risk) = p.risk.as_mut() {
                let view = HistoryView {
                    carrier_flagged,
                    ..history.shipper_view(&self.risk, p.package.shipper_key)
                };
                AccountHistory::apply(&self.risk, view, risk);
            }
        }
        for p in &m.packages {
            history.record_shipper(&self.risk, p.package.shipper_key, !p.accepted());
        }
        history.record_carrier(&self.risk, carrier, m.packages.iter().map(|p| !p.accepted()));
    }

    /// Writes every assessment of a message, one JSON object per line.
    pub fn encode_lines(&self, outcome: &Outcome<'_>, out: &mut Vec<u8>) {
        match outcome {
            Outcome::Message(issue) => {
                encode::message_failure(out, issue);
                out.push(b'\n');
            }
            Outcome::Manifest(m) => {
                // The manifest's part is written once, then copied for each package.
                let start = out.len();
                encode::manifest_part(out, m);
                let end = out.len();
                let mut text = encode::ManifestText::default();
                for (i, p) in m.packages.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_within(start..end);
                    }
                    encode::package_part_with(out, self, p, &mut text);
                    out.push(b'\n');
                }
                if m.packages.is_empty() {
                    out.truncate(start);
                }
            }
        }
    }
}

/// Finds the `config/` directory: `$DUTYFLOW_CONFIG_DIR`, else `./config`, else the one in the
/// source tree this was built from.
pub fn default_config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DUTYFLOW_CONFIG_DIR") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("config");
    if local.join("rates/regimes.toml").exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

#[cfg(test)]
pub(crate) fn config_dir_for_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}
