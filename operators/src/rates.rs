//! The rate book: regimes, effective-dated origin rates, FX rates, the HTS rate table and
//! carriers' method elections, all loaded from `config/` and checked at start.

use crate::reference::{Country, Currency, Reference};
use crate::table::{fingerprint, parse_date, parse_dec, DataError, DataFile};
use ahash::AHashMap;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::path::Path;

/// A value in force over a closed date range (`to: None` is open-ended).
#[derive(Debug, Clone)]
struct Dated {
    from: NaiveDate,
    to: Option<NaiveDate>,
    value: Decimal,
}

/// Rows keyed by `K`, each key's rows sorted and non-overlapping.
#[derive(Debug, Clone)]
struct DatedTable<K> {
    rows: AHashMap<K, Vec<Dated>>,
}

impl<K: std::hash::Hash + Eq + Copy> DatedTable<K> {
    fn new() -> Self {
        DatedTable { rows: AHashMap::new() }
    }

    fn insert(&mut self, file: &DataFile, line: usize, key: K, row: Dated, name: &str) -> Result<(), DataError> {
        if let Some(to) = row.to {
            if to < row.from {
                return Err(file.err(
                    line,
                    format!("{name}: effective_to {to} is before effective_from {}", row.from),
                ));
            }
        }
        let rows = self.rows.entry(key).or_default();
        for r in rows.iter() {
            let overlaps = r.to.is_none_or(|t| row.from <= t) && row.to.is_none_or(|t| r.from <= t);
            if overlaps {
                return Err(file.err(
                    line,
                    format!("{name}: dates overlap another row for the same key (from {})", r.from),
                ));
            }
        }
        rows.push(row);
        rows.sort_by_key(|r| r.from);
        Ok(())
    }

    #[inline]
    fn get(&self, key: &K, date: NaiveDate) -> Option<Decimal> {
        self.rows
            .get(key)?
            .iter()
            .find(|r| r.from <= date && r.to.is_none_or(|t| date <= t))
            .map(|r| r.value)
    }
}

/// How a regime computes ad valorem duty.
#[derive(Debug, Clone)]
pub enum Basis {
    /// At the item's origin rate from a dated table (IEEPA).
    OriginTable,
    /// At one rate for every origin (section 122).
    Flat(Decimal),
    /// At the rate of the item's HTS line (postal entry).
    HtsTable,
}

/// One band of the specific method: the first band whose condition holds gives the amount.
#[derive(Debug, Clone)]
pub struct Band {
    pub rate_below: Option<Decimal>,
    pub rate_up_to: Option<Decimal>,
    pub amount_usd: Decimal,
}

/// A rate regime, in force for arrivals from `from` to `to` (inclusive, US Eastern dates).
#[derive(Debug, Clone)]
pub struct Regime {
    pub id: String,
    pub from: NaiveDate,
    pub to: Option<NaiveDate>,
    pub basis: Basis,
    pub specific_method_until: Option<NaiveDate>,
    pub specific_bands: Vec<Band>,
    pub gift_exemption_usd: Decimal,
    pub fees_usd: Decimal,
    pub max_package_value_usd: Option<Decimal>,
    pub hts_digits: Vec<usize>,
    pub hts_required: bool,
    origin_rates: Option<DatedTable<Country>>,
    origin_default: Option<Vec<Dated>>,
    hts_rates: Option<AHashMap<(u8, u64), Decimal>>,
}

impl Regime {
    /// Whether the specific method may be used for an arrival on `date`.
    pub fn offers_specific(&self, date: NaiveDate) -> bool {
        self.specific_method_until.is_some_and(|until| date <= until) && !self.specific_bands.is_empty()
    }

    /// The specific amount for a package whose deciding origin rate is `rate`.
    pub fn specific_amount(&self, rate: Decimal) -> Option<Decimal> {
        self.specific_bands
            .iter()
            .find(|b| b.rate_below.is_none_or(|x| rate < x) && b.rate_up_to.is_none_or(|x| rate <= x))
            .map(|b| b.amount_usd)
    }

    /// The origin's rate under an origin-table basis (falling back to the default row).
    pub fn origin_rate(&self, origin: Country, date: NaiveDate) -> Option<Decimal> {
        let table = self.origin_rates.as_ref()?;
        if let Some(rate) = table.get(&origin, date) {
            return Some(rate);
        }
        // An origin with rows, none in force that day, still falls back to the default.
        self.origin_default
            .as_ref()?
            .iter()
            .find(|r| r.from <= date && r.to.is_none_or(|t| date <= t))
            .map(|r| r.value)
    }

    /// The rate of an HTS number under an HTS-table basis: the longest listed prefix.
    pub fn hts_rate(&self, hts: &str) -> Option<Decimal> {
        let table = self.hts_rates.as_ref()?;
        let digits = hts.as_bytes();
        for len in [10usize, 8, 6, 4, 2] {
            if digits.len() >= len {
                if let Some(key) = hts_key(&digits[..len]) {
                    if let Some(rate) = table.get(&key) {
                        return Some(*rate);
                    }
                }
            }
        }
        None
    }
}

fn hts_key(digits: &[u8]) -> Option<(u8, u64)> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Some((digits.len() as u8, v))
}

/// The calculation method of an assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Method {
    #[default]
    AdValorem,
    Specific,
    Exempt,
}

impl Method {
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::AdValorem => "ad_valorem",
            Method::Specific => "specific",
            Method::Exempt => "exempt",
        }
    }
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "ad_valorem" => Some(Method::AdValorem),
            "specific" => Some(Method::Specific),
            "exempt" => Some(Method::Exempt),
            _ => None,
        }
    }
}

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(date: NaiveDate) -> Month {
        use chrono::Datelike;
        Month {
            year: date.year(),
            month: date.month(),
        }
    }
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let month = Month {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
        };
        (1..=12).contains(&month.month).then_some(month)
    }
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegimesDoc {
    version: String,
    regime: Vec<RegimeDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegimeDoc {
    id: String,
    from: String,
    to: Option<String>,
    basis: String,
    origin_rates: Option<String>,
    flat_rate: Option<String>,
    hts_rates: Option<String>,
    specific_method_until: Option<String>,
    specific_band_policy: Option<String>,
    #[serde(default)]
    specific_bands: Vec<BandDoc>,
    gift_exemption_usd: String,
    fees_usd: String,
    max_package_value_usd: Option<String>,
    hts_digits: Vec<usize>,
    hts_required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BandDoc {
    rate_below: Option<String>,
    rate_up_to: Option<String>,
    amount_usd: String,
}

/// Everything rate-related, loaded and checked.
pub struct RateBook {
    /// `rates_version` recorded on every assessment: the declared version plus a fingerprint
    /// of the rate files' contents.
    pub version: String,
    pub regimes: Vec<Regime>,
    fx: DatedTable<[u8; 3]>,
    elections: AHashMap<(String, Month), Method>,
}

impl RateBook {
    pub fn load(dir: &Path, reference: &Reference) -> Result<Self, DataError> {
        let rates_dir = dir.join("rates");
        let regimes_file = DataFile::read(&rates_dir.join("regimes.toml"))?;
        let doc: RegimesDoc = regimes_file.toml()?;
        let mut fingerprinted: Vec<Vec<u8>> = vec![regimes_file.text.clone().into_bytes()];
        let line_of = |id: &str| {
            regimes_file
                .text
                .find(&format!("\"{id}\""))
                .map(|p| regimes_file.text[..p].lines().count())
        };
        let rerr = |id: &str, msg: String| DataError {
            file: regimes_file.path.clone(),
            line: line_of(id),
            message: format!("regime {id}: {msg}"),
        };
        let date = |id: &str, s: &str| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| rerr(id, format!("`{s}` is not a date")))
        };
        let dec = |id: &str, s: &str| crate::money::parse_decimal(s, 12, false).map_err(|e| rerr(id, e.describe(s)));

        let mut regimes: Vec<Regime> = Vec::new();
        for r in &doc.regime {
            let id = r.id.as_str();
            let from = date(id, &r.from)?;
            let to = r.to.as_deref().map(|s| date(id, s)).transpose()?;
            let mut regime = Regime {
                id: r.id.clone(),
                from,
                to,
                basis: Basis::OriginTable,
                specific_method_until: r.specific_method_until.as_deref().map(|s| date(id, s)).transpose()?,
                specific_bands: Vec::new(),
                gift_exemption_usd: dec(id, &r.gift_exemption_usd)?,
                fees_usd: dec(id, &r.fees_usd)?,
                max_package_value_usd: r.max_package_value_usd.as_deref().map(|s| dec(id, s)).transpose()?,
                hts_digits: r.hts_digits.clone(),
                hts_required: r.hts_required,
                origin_rates: None,
                origin_default: None,
                hts_rates: None,
            };
            if r.hts_digits.is_empty() || r.hts_digits.iter().any(|d| ![6, 8, 10].contains(d)) {
                return Err(rerr(id, "hts_digits must list 6, 8 and/or 10".into()));
            }
            match r.specific_band_policy.as_deref() {
                None | Some("highest_origin_rate") => {}
                Some(other) => return Err(rerr(id, format!("unknown specific_band_policy `{other}`"))),
            }
            for b in &r.specific_bands {
                regime.specific_bands.push(Band {
                    rate_below: b.rate_below.as_deref().map(|s| dec(id, s)).transpose()?,
                    rate_up_to: b.rate_up_to.as_deref().map(|s| dec(id, s)).transpose()?,
                    amount_usd: dec(id, &b.amount_usd)?,
                });
            }
            if regime.specific_method_until.is_some()
                && regime
                    .specific_bands
                    .last()
                    .is_none_or(|b| b.rate_below.is_some() || b.rate_up_to.is_some())
            {
                return Err(rerr(
                    id,
                    "the last specific band must have no condition, so every rate finds a band".into(),
                ));
            }
            match r.basis.as_str() {
                "origin_table" => {
                    let name = r
                        .origin_rates
                        .as_deref()
                        .ok_or_else(|| rerr(id, "basis origin_table needs origin_rates".into()))?;
                    let file = DataFile::read(&rates_dir.join(name))?;
                    let (table, default) = load_origin_rates(&file, reference)?;
                    fingerprinted.push(file.text.into_bytes());
                    regime.origin_rates = Some(table);
                    regime.origin_default = Some(default);
                }
                "flat" => {
                    let rate = dec(
                        id,
                        r.flat_rate
                            .as_deref()
                            .ok_or_else(|| rerr(id, "basis flat needs flat_rate".into()))?,
                    )?;
                    check_rate(rate).map_err(|m| rerr(id, m))?;
                    regime.basis = Basis::Flat(rate);
                }
                "hts_table" => {
                    let name = r
                        .hts_rates
                        .as_deref()
                        .ok_or_else(|| rerr(id, "basis hts_table needs hts_rates".into()))?;
                    let file = DataFile::read(&rates_dir.join(name))?;
                    regime.hts_rates = Some(load_hts_rates(&file)?);
                    fingerprinted.push(file.text.into_bytes());
                    regime.basis = Basis::HtsTable;
                }
                other => {
                    return Err(rerr(
                        id,
                        format!("unknown basis `{other}` (origin_table, flat or hts_table)"),
                    ))
                }
            }
            regimes.push(regime);
        }
        regimes.sort_by_key(|r| r.from);
        for w in regimes.windows(2) {
            if w[0].to.is_none_or(|t| t >= w[1].from) {
                return Err(rerr(
                    &w[1].id,
                    format!("starts {} while {} is still in force", w[1].from, w[0].id),
                ));
            }
        }

        let fx_file = DataFile::read(&rates_dir.join("fx_rates.csv"))?;
        let mut fx = DatedTable::new();
        for row in fx_file.csv(&["currency", "usd_per_unit", "effective_from", "effective_to"])? {
            let [code, rate, from, to] = row.fields[..] else {
                unreachable!("field count checked")
            };
            let currency = reference
                .currency(code)
                .ok_or_else(|| fx_file.err(row.line, format!("`{code}` is not an ISO 4217 currency")))?;
            if currency.is_usd() {
                return Err(fx_file.err(row.line, "USD converts 1:1 by definition; remove this row"));
            }
            let value = parse_dec(&fx_file, row.line, rate, "usd_per_unit")?;
            if value.is_zero() {
                return Err(fx_file.err(row.line, "usd_per_unit must be greater than zero"));
            }
            let dated = Dated {
                from: parse_date(&fx_file, row.line, from)?,
                to: optional_date(&fx_file, row.line, to)?,
                value,
            };
            fx.insert(&fx_file, row.line, currency.code, dated, code)?;
        }
        fingerprinted.push(fx_file.text.into_bytes());

        let elections_file = DataFile::read(&dir.join("elections.csv"))?;
        let mut elections = AHashMap::new();
        for row in elections_file.csv(&["carrier", "month", "method"])? {
            let [carrier, month, method] = row.fields[..] else {
                unreachable!("field count checked")
            };
            let m = Month::parse(month)
                .ok_or_else(|| elections_file.err(row.line, format!("`{month}` is not a month (YYYY-MM)")))?;
            let method = Method::parse(method).filter(|m| *m != Method::Exempt).ok_or_else(|| {
                elections_file.err(row.line, format!("`{method}` is not a method (ad_valorem or specific)"))
            })?;
            if elections.insert((carrier.to_string(), m), method).is_some() {
                return Err(elections_file.err(
                    row.line,
                    format!("{carrier} already elected a method for {m}: one method per carrier per month"),
                ));
            }
        }

        let parts: Vec<&[u8]> = fingerprinted.iter().map(Vec::as_slice).collect();
        let version = format!("{}+{:08x}", doc.version, fingerprint(&parts) as u32);
        Ok(RateBook {
            version,
            regimes,
            fx,
            elections,
        })
    }

    /// The regime in force for an arrival date.
    #[inline]
    pub fn regime_for(&self, date: NaiveDate) -> Option<&Regime> {
        self.regimes
            .iter()
            .find(|r| r.from <= date && r.to.is_none_or(|t| date <= t))
    }

    /// USD value of one unit of `currency` on `date`; USD is 1.
    #[inline]
    pub fn usd_per_unit(&self, currency: Currency, date: NaiveDate) -> Option<Decimal> {
        if currency.is_usd() {
            return Some(Decimal::ONE);
        }
        self.fx.get(&currency.code, date)
    }

    /// The method a carrier elected for a month (ad valorem when none).
    #[inline]
    pub fn elected_method(&self, carrier: &str, month: Month) -> Method {
        if self.elections.is_empty() {
            return Method::AdValorem;
        }
        self.elections
            .get(&(carrier.to_string(), month))
            .copied()
            .unwrap_or(Method::AdValorem)
    }
}

fn optional_date(file: &DataFile, line: usize, text: &str) -> Result<Option<NaiveDate>, DataError> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse_date(file, line, text).map(Some)
    }
}

fn check_rate(rate: Decimal) -> Result<(), String> {
    if rate > Decimal::ONE {
        Err(format!("rate {rate} is above 1 (rates are fractions: 0.15 is 15 %)"))
    } else {
        Ok(())
    }
}

fn load_origin_rates(file: &DataFile, reference: &Reference) -> Result<(DatedTable<Country>, Vec<Dated>), DataError> {
    let mut table = DatedTable::new();
    let mut default = DatedTable::<u8>::new();
    for row in file.csv(&["origin", "rate", "effective_from", "effective_to"])? {
        let [origin, rate, from, to] = row.fields[..] else {
            unreachable!("field count checked")
        };
        let value = parse_dec(file, row.line, rate, "rate")?;
        check_rate(value).map_err(|m| file.err(row.line, m))?;
        let dated = Dated {
            from: parse_date(file, row.line, from)?,
            to: optional_date(file, row.line, to)?,
            value,
        };
        if origin == "*" {
            default.insert(file, row.line, 0, dated, "default")?;
        } else {
            let country = reference
                .country(origin)
                .filter(|c| c.as_str() == origin)
                .ok_or_else(|| file.err(row.line, format!("`{origin}` is not an ISO country code")))?;
            table.insert(file, row.line, country, dated, origin)?;
        }
    }
    let default = default
        .rows
        .remove(&0)
        .ok_or_else(|| DataError::file(&file.path, "no default row (origin `*`)"))?;
    Ok((table, default))
}

fn load_hts_rates(file: &DataFile) -> Result<AHashMap<(u8, u64), Decimal>, DataError> {
    let mut table = AHashMap::new();
    for row in file.csv(&["hts", "rate", "description"])? {
        let [hts, rate, _] = row.fields[..] else {
            unreachable!("field count checked")
        };
        let key = hts_key(hts.as_bytes())
            .filter(|(len, _)| [2, 4, 6, 8, 10].contains(len))
            .ok_or_else(|| file.err(row.line, format!("hts `{hts}` must be 2, 4, 6, 8 or 10 digits")))?;
        let value = parse_dec(file, row.line, rate, "rate")?;
        check_rate(value).map_err(|m| file.err(row.line, m))?;
        if table.insert(key, value).is_some() {
            return Err(file.err(row.line, format!("hts `{hts}` listed twice")));
        }
    }
    Ok(table)
}
