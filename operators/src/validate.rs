//! Validation, levels 1 (format and completeness) and 2 (business logic) of the brief.
//!
//! Invariant: validation never stops at the first problem. Every field is checked and every
//! problem becomes an `Issue` with the field's JSON path. Header problems reject every package
//! of the manifest; package problems reject only that package. Validation also resolves what
//! assessment needs (each line's USD value and rate), so a missing FX rate or HTS rate is
//! reported together with every other problem of the package.

use crate::calendar::{eastern_date, parse_rfc3339};
use crate::decode::{clip, Field, Json, Part, RawItem, RawItems, RawManifest, RawPackage};
use crate::error::{Code, Issue, Issues, Path};
use crate::model::{account_key, Category, Header, Item, Package};
use crate::money::{cmp_amounts, mul_round_cents, parse_decimal, round_cents, AmountError};
use crate::rates::{Basis, Method, Month};
use crate::reference::{check_hts, check_s10, is_port, CodeType, S10Error};
use crate::small::SmallList;
use crate::Operators;
use ahash::AHashMap;
use rust_decimal::Decimal;
use std::collections::hash_map::Entry;

/// Most items a package may hold (contract §1).
pub const MAX_ITEMS: usize = 100;
const MAX_WEIGHT_KG: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);
const MAX_QUANTITY: u64 = 1_000_000;

/// What the fields being checked belong to: a package, or one item of a package.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Package(usize),
    Item(usize, usize),
}

/// A field of a package or item: its scope (one value per package or item, passed by
/// address) and its path within it. On the happy path it is only addresses and constants, so
/// nothing is written for it; it becomes a [`Path`] when an issue is raised.
#[derive(Debug, Clone, Copy)]
struct At<'s> {
    scope: &'s Scope,
    rest: &'static str,
}

impl From<At<'_>> for Path<'static> {
    #[inline]
    fn from(at: At<'_>) -> Self {
        match *at.scope {
            Scope::Package(p) => Path::Package(p, at.rest),
            Scope::Item(p, j) => Path::Item(p, j, at.rest),
        }
    }
}

/// A required string: reports missing, null, empty or wrongly typed values.
#[inline(always)]
fn required_str<'a>(f: Field<'a>, path: impl Into<Path<'static>>, name: &str, issues: &mut Issues) -> Option<&'a str> {
    match f {
        Some(Json::Str(s)) if !is_blank(s) => Some(s),
        _ => required_str_problem(f, path, name, issues),
    }
}

/// The reports of [`required_str`], out of the common path.
#[cold]
#[inline(never)]
fn required_str_problem<'a>(
    f: Field<'a>,
    path: impl Into<Path<'static>>,
    name: &str,
    issues: &mut Issues,
) -> Option<&'a str> {
    match f {
        None => {
            issues.push(Code::MissingField, path, format!("{name} is missing"));
            None
        }
        Some(Json::Null) => {
            issues.push(Code::MissingField, path, format!("{name} is null; it is required"));
            None
        }
        Some(Json::Str(s)) if is_blank(s) => {
            issues.push(Code::MissingField, path, format!("{name} is empty; it is required"));
            None
        }
        Some(Json::Str(s)) => Some(s),
        Some(other) => {
            issues.push(
                Code::SchemaViolation,
                path,
                format!("{name} must be a string, found {}", other.kind()),
            );
            None
        }
    }
}

/// Empty or only (Unicode) whitespace. Most values start with a visible ASCII character,
/// which settles it without decoding.
#[inline]
fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        // Visible ASCII (0x21 to 0x7f) is never whitespace.
        Some(&b) if b > b' ' && b.is_ascii() => false,
        Some(&b) if b.is_ascii() && !is_ascii_space(b) => false,
        _ => s.trim().is_empty(),
    }
}

/// The ASCII characters `char::is_whitespace` accepts (note: vertical tab too).
#[inline]
fn is_ascii_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

/// Characters of `s` without leading and trailing (Unicode) whitespace.
#[inline]
fn trimmed_chars(s: &str) -> usize {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) if f.is_ascii() && l.is_ascii() && !is_ascii_space(f) && !is_ascii_space(l) => {
            s.chars().count()
        }
        _ => s.trim().chars().count(),
    }
}

/// `Err(characters)` when a description, trimmed, does not have 3 to 256 characters. A text
/// with nothing to trim and 12 to 256 bytes has 3 to 256 characters (a character takes 1 to 4
/// bytes), so most descriptions are not counted.
#[inline]
fn description_length(d: &str) -> Result<(), usize> {
    let b = d.as_bytes();
    if let (Some(&f), Some(&l)) = (b.first(), b.last()) {
        if (12..=256).contains(&b.len()) && f.is_ascii() && l.is_ascii() && !is_ascii_space(f) && !is_ascii_space(l) {
            return Ok(());
        }
    }
    let n = trimmed_chars(d);
    if (3..=256).contains(&n) {
        Ok(())
    } else {
        Err(n)
    }
}

/// More than `max` characters; only texts of more than `max` bytes are counted.
#[inline]
fn longer_than(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

/// An optional string: absent and null are both "not given".
#[inline(always)]
fn optional_str<'a>(f: Field<'a>, path: impl Into<Path<'static>>, name: &str, issues: &mut Issues) -> Option<&'a str> {
    match f {
        None | Some(Json::Null) => None,
        Some(Json::Str(s)) => Some(s),
        Some(other) => {
            not_a_string(other, path, name, issues);
            None
        }
    }
}

#[cold]
#[inline(never)]
fn not_a_string(other: Json<'_>, path: impl Into<Path<'static>>, name: &str, issues: &mut Issues) {
    issues.push(
        Code::SchemaViolation,
        path,
        format!("{name} must be a string, found {}", other.kind()),
    );
}

/// A required object: `Some(t)` when present and an object.
#[inline(always)]
fn required_part<'p, T>(
    p: &'p Part<T>,
    path: impl Into<Path<'static>>,
    name: &str,
    issues: &mut Issues,
) -> Option<&'p T> {
    match p {
        Part::Ok(t) => Some(t),
        Part::Missing => {
            part_problem(None, path, name, issues);
            None
        }
        Part::Wrong(kind) => {
            part_problem(Some(kind), path, name, issues);
            None
        }
    }
}

/// The report of a required object that is missing (`None`) or of another type.
#[cold]
#[inline(never)]
fn part_problem(kind: Option<&str>, path: impl Into<Path<'static>>, name: &str, issues: &mut Issues) {
    match kind {
        None => issues.push(Code::MissingField, path, format!("{name} is missing")),
        Some("null") => issues.push(Code::MissingField, path, format!("{name} is null; it is required")),
        Some(kind) => issues.push(
            Code::SchemaViolation,
            path,
            format!("{name} must be an object, found {kind}"),
        ),
    }
}

/// A decimal given as a string or a JSON number; `None` when missing (already reported).
#[inline(always)]
fn decimal_text<'a>(
    f: Field<'a>,
    path: impl Into<Path<'static>>,
    name: &str,
    code: Code,
    issues: &mut Issues,
) -> Option<(&'a str, bool)> {
    match f {
        Some(Json::Str(s)) => Some((s, false)),
        Some(Json::Num(n)) => Some((n, true)),
        other => {
            not_a_decimal(other, path, name, code, issues);
            None
        }
    }
}

#[cold]
#[inline(never)]
fn not_a_decimal(f: Field<'_>, path: impl Into<Path<'static>>, name: &str, code: Code, issues: &mut Issues) {
    match f {
        None | Some(Json::Null) => issues.push(Code::MissingField, path, format!("{name} is missing")),
        Some(other) => issues.push(
            code,
            path,
            format!(
                "{name} must be a decimal number or a string such as \"85.00\", found {}",
                other.kind()
            ),
        ),
    }
}

#[inline(always)]
fn country(
    ops: &Operators,
    s: &str,
    path: impl Into<Path<'static>>,
    name: &str,
    issues: &mut Issues,
) -> Option<crate::reference::Country> {
    let c = ops.reference.country(s);
    if c.is_none() {
        not_a_country(s, path, name, issues);
    }
    c
}

#[cold]
#[inline(never)]
fn not_a_country(s: &str, path: impl Into<Path<'static>>, name: &str, issues: &mut Issues) {
    issues.push(
        Code::InvalidCountry,
        path,
        format!(
            "{name} \"{}\" is not an ISO 3166-1 alpha-2 country code (e.g. DE, CN, GB)",
            clip(s)
        ),
    );
}

/// Validates the manifest header. Echo fields are kept even when invalid.
pub fn header<'a>(ops: &Operators, m: &RawManifest<'a>) -> Header<'a> {
    let mut issues = Issues::default();
    let mut h = Header::default();

    if let Some(id) = required_str(m.manifest_id, Path::Header("$.manifest_id"), "manifest_id", &mut issues) {
        h.manifest_id = Some(id);
        let ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            issues.push(
                Code::InvalidManifestId,
                Path::Header("$.manifest_id"),
                format!(
                    "manifest_id \"{}\" must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
                    clip(id)
                ),
            );
        }
    }

    if let Some(c) = required_part(&m.carrier, Path::Header("$.carrier"), "carrier", &mut issues) {
        let code = required_str(c.code, Path::Header("$.carrier.code"), "carrier.code", &mut issues);
        let code_type = required_str(
            c.code_type,
            Path::Header("$.carrier.code_type"),
            "carrier.code_type",
            &mut issues,
        );
        h.carrier = code;
        match code_type.map(|t| (t, CodeType::parse(t))) {
            Some((t, None)) => issues.push(
                Code::InvalidCarrierCode,
                Path::Header("$.carrier.code_type"),
                format!("carrier.code_type \"{}\" must be iata, icao or scac", clip(t)),
            ),
            Some((_, Some(kind))) => {
                if let Some(code) = code {
                    if let Err(hint) = kind.check(code) {
                        issues.push(
                            Code::InvalidCarrierCode,
                            Path::Header("$.carrier.code"),
                            format!("carrier.code \"{}\" is not valid: {hint}", clip(code)),
                        );
                    }
                }
            }
            None => {}
        }
    }

    if let Some(t) = required_part(&m.trip, Path::Header("$.trip"), "trip", &mut issues) {
        if let Some(n) = required_str(t.number, Path::Header("$.trip.number"), "trip.number", &mut issues) {
            h.trip_number = Some(n);
            if n.chars().count() > 16 {
                issues.push(
                    Code::InvalidTripNumber,
                    Path::Header("$.trip.number"),
                    format!("trip.number \"{}\" is longer than 16 characters", clip(n)),
                );
            }
        }
        if let Some(c) = required_str(
            t.departure_country,
            Path::Header("$.trip.departure_country"),
            "trip.departure_country",
            &mut issues,
        ) {
            h.departure_country = country(
                ops,
                c,
                Path::Header("$.trip.departure_country"),
                "trip.departure_country",
                &mut issues,
            );
        }
        if let Some(p) = required_str(
            t.port_of_arrival,
            Path::Header("$.trip.port_of_arrival"),
            "trip.port_of_arrival",
            &mut issues,
        ) {
            h.port_of_arrival = Some(p);
            if !is_port(p) {
                issues.push(
                    Code::InvalidPort,
                    Path::Header("$.trip.port_of_arrival"),
                    format!(
                        "trip.port_of_arrival \"{}\" must be 4 digits (district and port, e.g. 4701)",
                        clip(p)
                    ),
                );
            }
        }
        let departure = optional_str(t.departure_time, Path::Header("$.trip.departure_time"), "trip.departure_time", &mut issues).and_then(|s| {
            let parsed = parse_rfc3339(s);
            if parsed.is_none() {
                issues.push(
                    Code::InvalidDate,
                    Path::Header("$.trip.departure_time"),
                    format!("trip.departure_time \"{}\" is not an RFC 3339 time with offset, e.g. 2026-03-02T10:15:00+01:00", clip(s)),
                );
            }
            parsed
        });
        if let Some(s) = required_str(
            t.arrival_time,
            Path::Header("$.trip.arrival_time"),
            "trip.arrival_time",
            &mut issues,
        ) {
            match parse_rfc3339(s) {
                None => issues.push(
                    Code::InvalidDate,
                    Path::Header("$.trip.arrival_time"),
                    format!(
                        "trip.arrival_time \"{}\" is not an RFC 3339 time with offset, e.g. 2026-03-02T13:05:00-05:00",
                        clip(s)
                    ),
                ),
                Some(arrival) => {
                    if let Some(dep) = departure {
                        if dep > arrival {
                            issues.push(
                                Code::InvalidDate,
                                Path::Header("$.trip.departure_time"),
                                format!(
                                    "trip.departure_time {} is after trip.arrival_time {}",
                                    dep.to_rfc3339(),
                                    arrival.to_rfc3339()
                                ),
                            );
                        }
                    }
                    let date = eastern_date(arrival);
                    // Echo only dates that print as YYYY-MM-DD; no regime covers others anyway.
                    if (1..=9999).contains(&chrono::Datelike::year(&date)) {
                        h.arrival_date = Some(date);
                        h.month = Some(Month::of(date));
                    }
                    h.regime = ops
                        .rates
                        .regimes
                        .iter()
                        .position(|r| r.from <= date && r.to.is_none_or(|t| date <= t));
                    if h.regime.is_none() {
                        let first = ops
                            .rates
                            .regimes
                            .first()
                            .map(|r| r.from.to_string())
                            .unwrap_or_default();
                        issues.push(
                            Code::NoRateRegime,
                            Path::Header("$.trip.arrival_time"),
                            format!(
                                "no rate regime covers the arrival date {date} (US Eastern); regimes start {first}"
                            ),
                        );
                    }
                }
            }
        }
    }

    // The method in force: the carrier's election, when the regime offers it that day.
    if let (Some(carrier), Some(month), Some(ri), Some(date)) = (h.carrier, h.month, h.regime, h.arrival_date) {
        let elected = ops.rates.elected_method(carrier, month);
        let regime = &ops.rates.regimes[ri];
        h.method = if elected == Method::Specific && !regime.offers_specific(date) {
            h.warnings.push(Issue::new(
                Code::SpecificMethodUnavailable,
                "$.trip.arrival_time",
                format!("{carrier} elected the specific method for {month}, but {} does not offer it on {date}; assessed ad valorem", regime.id),
            ));
            Method::AdValorem
        } else {
            elected
        };
    }
    h.errors = issues.0;
    h
}

/// Validates one package against the (already validated) header.
pub fn package<'a>(
    ops: &Operators,
    h: &Header<'a>,
    index: usize,
    raw: &RawPackage<'a>,
    raw_items: &[RawItem<'a>],
) -> Package<'a> {
    let mut pkg = unchecked_package(index, raw);
    package_into(ops, h, raw, raw_items, &mut pkg);
    pkg
}

/// A package with nothing checked yet: what [`package_into`] starts from.
#[inline(always)]
pub(crate) fn unchecked_package<'a>(index: usize, raw: &RawPackage<'a>) -> Package<'a> {
    Package {
        index: index as u32,
        tracking_number: None,
        category: Category::Merchandise,
        shipper_name: None,
        shipper_country: None,
        shipper_key: None,
        consignee_key: None,
        weight_kg: None,
        items: SmallList::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        raw_start: raw.start,
    }
}

/// [`package`], written into `pkg` (from [`unchecked_package`]; the package's outcome, so the
/// package is built where it stays).
pub(crate) fn package_into<'a>(
    ops: &Operators,
    h: &Header<'a>,
    raw: &RawPackage<'a>,
    raw_items: &[RawItem<'a>],
    pkg: &mut Package<'a>,
) {
    let index = pkg.index as usize;
    let mut issues = Issues::default();
    let mut warnings = Vec::new();
    let scope = Scope::Package(index);
    let p = |rest: &'static str| At { scope: &scope, rest };
    if let Some(kind) = raw.not_object {
        issues.push(
            Code::SchemaViolation,
            p(""),
            format!("each package must be an object, found {kind}"),
        );
        pkg.errors = issues.0;
        return;
    }

    if let Some(t) = required_str(
        raw.tracking_number,
        p("tracking_number"),
        "tracking_number",
        &mut issues,
    ) {
        pkg.tracking_number = Some(t);
        match check_s10(t, &ops.reference) {
            Ok(()) => {}
            Err(S10Error::Format(msg)) => issues.push(Code::InvalidTrackingNumber, p("tracking_number"), msg),
            Err(S10Error::CheckDigit { expected, found }) => issues.push(
                Code::TrackingCheckDigit,
                p("tracking_number"),
                format!(
                    "\"{t}\" has check digit {found}, but its serial {} gives {expected}",
                    &t[2..10]
                ),
            ),
        }
    }

    if let Some(c) = optional_str(raw.category, p("category"), "category", &mut issues) {
        match Category::parse(c) {
            Some(cat) => pkg.category = cat,
            None => issues.push(
                Code::InvalidCategory,
                p("category"),
                format!(
                    "category \"{}\" must be merchandise, gift, documents, returned_goods or commercial_sample",
                    clip(c)
                ),
            ),
        }
    }

    if let Some(s) = required_part(&raw.shipper, p("shipper"), "shipper", &mut issues) {
        let name = required_name(s.name, p("shipper.name"), &mut issues);
        let shipper_country = required_str(s.country, p("shipper.country"), "shipper.country", &mut issues)
            .and_then(|c| country(ops, c, p("shipper.country"), "shipper.country", &mut issues));
        // The key from these values, not read back from `pkg`: a country just stored there
        // byte by byte and loaded back as one word stalled (a store-forwarding failure).
        if let (Some(name), Some(c)) = (name, shipper_country) {
            pkg.shipper_key = Some(account_key(&[name, c.as_str()]));
        }
        pkg.shipper_name = name;
        pkg.shipper_country = shipper_country;
    }

    if let Some(c) = required_part(&raw.consignee, p("consignee"), "consignee", &mut issues) {
        let name = required_name(c.name, p("consignee.name"), &mut issues);
        if let Some(a) = required_part(&c.address, p("consignee.address"), "consignee.address", &mut issues) {
            required_str(
                a.line1,
                p("consignee.address.line1"),
                "consignee.address.line1",
                &mut issues,
            );
            required_str(
                a.city,
                p("consignee.address.city"),
                "consignee.address.city",
                &mut issues,
            );
            optional_str(
                a.state,
                p("consignee.address.state"),
                "consignee.address.state",
                &mut issues,
            );
            let postal = required_str(
                a.postal_code,
                p("consignee.address.postal_code"),
                "consignee.address.postal_code",
                &mut issues,
            );
            if let Some(code) = postal {
                if !is_zip(code) {
                    issues.push(
                        Code::InvalidAddress,
                        p("consignee.address.postal_code"),
                        format!(
                            "consignee.address.postal_code \"{}\" is not a US ZIP code (12207 or 12207-1234)",
                            clip(code)
                        ),
                    );
                }
            }
            if let Some(cc) = required_str(
                a.country,
                p("consignee.address.country"),
                "consignee.address.country",
                &mut issues,
            ) {
                if cc != "US" {
                    issues.push(
                        Code::InvalidCountry,
                        p("consignee.address.country"),
                        format!(
                            "consignee.address.country is \"{}\"; packages on a US manifest are addressed to the US",
                            clip(cc)
                        ),
                    );
                }
            }
            if let (Some(n), Some(z)) = (name, postal.filter(|z| is_zip(z))) {
                pkg.consignee_key = Some(account_key(&[n, &z[..5]]));
            }
        }
    }

    if let Some((text, is_num)) = decimal_text(
        raw.weight_kg,
        p("weight_kg"),
        "weight_kg",
        Code::InvalidWeight,
        &mut issues,
    ) {
        match parse_decimal(text, 3, is_num) {
            Ok(w) if w.is_zero() => {
                issues.push(Code::InvalidWeight, p("weight_kg"), "weight_kg must be greater than 0")
            }
            Ok(w) if cmp_amounts(w, MAX_WEIGHT_KG).is_gt() => issues.push(
                Code::InvalidWeight,
                p("weight_kg"),
                format!("weight_kg {w} is above {MAX_WEIGHT_KG} kg; is it in grams?"),
            ),
            Ok(w) => pkg.weight_kg = Some(w),
            Err(e) => issues.push(
                Code::InvalidWeight,
                p("weight_kg"),
                format!("weight_kg {}", e.describe(text)),
            ),
        }
    }

    let regime = h.regime.map(|ri| &ops.rates.regimes[ri]);
    match raw.items {
        RawItems::Missing => issues.push(
            Code::MissingField,
            p("items"),
            "items is missing; a package lists 1 to 100 items",
        ),
        RawItems::Wrong(kind) => issues.push(
            Code::SchemaViolation,
            p("items"),
            format!("items must be an array of item objects, found {kind}"),
        ),
        RawItems::Range(a, b) => {
            let list = &raw_items[a as usize..b as usize];
            if list.is_empty() {
                issues.push(
                    Code::SchemaViolation,
                    p("items"),
                    "items is empty; a package lists 1 to 100 items",
                );
            } else if list.len() > MAX_ITEMS {
                issues.push(
                    Code::SchemaViolation,
                    p("items"),
                    format!("items has {} entries; a package lists at most {MAX_ITEMS}", list.len()),
                );
            } else {
                for (j, raw_item) in list.iter().enumerate() {
                    if let Some(item) = item(ops, h, regime, index, j, raw_item, &mut issues) {
                        pkg.items.push(item);
                    }
                }
            }
        }
    }

    // Level 2 on the whole package, once its items are resolved (which needs a valid header).
    if issues.is_empty() && h.errors.is_empty() {
        let total = pkg.value_usd();
        if let Some(max) = regime.and_then(|r| r.max_package_value_usd) {
            if cmp_amounts(total, max).is_gt() {
                issues.push(
                    Code::ValueAbovePostalLimit,
                    p("items"),
                    format!(
                        "the package is valued {} USD, above the {} USD limit of postal entry; it needs a formal entry",
                        round_cents(total),
                        max
                    ),
                );
            }
        }
        if total.is_zero() && matches!(pkg.category, Category::Merchandise | Category::CommercialSample) {
            warnings.push(Issue::new(
                Code::ZeroDeclaredValue,
                Path::from(p("items")).render(),
                "every item is declared at 0; merchandise normally has a value",
            ));
        }
    }
    pkg.errors = issues.0;
    pkg.warnings = warnings;
}

/// A required name (a shipper's, a consignee's) of at most 256 characters; `at.rest` is its
/// field name. A name too long is reported and still returned.
fn required_name<'a>(f: Field<'a>, at: At<'_>, issues: &mut Issues) -> Option<&'a str> {
    let name = required_str(f, at, at.rest, issues);
    if name.is_some_and(|n| longer_than(n, 256)) {
        issues.push(
            Code::InvalidName,
            at,
            format!("{} is longer than 256 characters", at.rest),
        );
    }
    name
}

fn is_zip(z: &str) -> bool {
    let b = z.as_bytes();
    (b.len() == 5 && b.iter().all(u8::is_ascii_digit))
        || (b.len() == 10
            && b[..5].iter().all(u8::is_ascii_digit)
            && b[5] == b'-'
            && b[6..].iter().all(u8::is_ascii_digit))
}

/// Validates one item and resolves its USD value and rate (when the header allows).
fn item<'a>(
    ops: &Operators,
    h: &Header<'a>,
    regime: Option<&crate::rates::Regime>,
    p: usize,
    j: usize,
    raw: &RawItem<'a>,
    issues: &mut Issues,
) -> Option<Item<'a>> {
    let scope = Scope::Item(p, j);
    let at = |rest: &'static str| At { scope: &scope, rest };
    if let Some(kind) = raw.not_object {
        issues.push(
            Code::SchemaViolation,
            at(""),
            format!("each item must be an object, found {kind}"),
        );
        return None;
    }
    let before = issues.len();
    let description = required_str(raw.description, at("description"), "description", issues);
    if let Some(d) = description {
        if let Err(n) = description_length(d) {
            issues.push(
                Code::InvalidDescription,
                at("description"),
                format!("description has {n} characters; describe the goods in 3 to 256 characters"),
            );
        }
    }

    let hts_required = regime.is_some_and(|r| r.hts_required);
    let hts = if hts_required {
        required_str(raw.hts, at("hts"), "hts", issues).map(|s| (s, true))
    } else {
        optional_str(raw.hts, at("hts"), "hts", issues).map(|s| (s, false))
    };
    let digits: &[usize] = regime.map_or(&[6, 10], |r| r.hts_digits.as_slice());
    let hts = hts.and_then(|(s, required)| match check_hts(s, digits) {
        Ok(()) => Some(s),
        Err(msg) => {
            let why = if required {
                format!(
                    "hts {msg}; {} requires the 10-digit HTS number",
                    regime.map_or("", |r| r.id.as_str())
                )
            } else {
                format!("hts {msg}")
            };
            issues.push(Code::InvalidHts, at("hts"), why);
            None
        }
    });

    let origin = required_str(raw.origin_country, at("origin_country"), "origin_country", issues)
        .and_then(|c| country(ops, c, at("origin_country"), "origin_country", issues));

    let quantity = match raw.quantity {
        None | Some(Json::Null) => {
            issues.push(Code::MissingField, at("quantity"), "quantity is missing");
            None
        }
        Some(Json::Num(n)) => match n.parse::<u64>() {
            Ok(q) if (1..=MAX_QUANTITY).contains(&q) => Some(q as u32),
            Ok(q) => {
                issues.push(
                    Code::InvalidQuantity,
                    at("quantity"),
                    format!("quantity {q} must be between 1 and {MAX_QUANTITY}"),
                );
                None
            }
            Err(_) => {
                issues.push(
                    Code::InvalidQuantity,
                    at("quantity"),
                    format!("quantity {} must be a whole number of at least 1", clip(n)),
                );
                None
            }
        },
        Some(other) => {
            issues.push(
                Code::SchemaViolation,
                at("quantity"),
                format!("quantity must be an integer number, found {}", other.kind()),
            );
            None
        }
    };

    let currency = required_str(raw.currency, at("currency"), "currency", issues).and_then(|c| {
        let cur = ops.reference.currency(c);
        if cur.is_none() {
            issues.push(
                Code::InvalidCurrency,
                at("currency"),
                format!(
                    "currency \"{}\" is not an ISO 4217 currency code (e.g. USD, EUR)",
                    clip(c)
                ),
            );
        }
        cur
    });

    let value = decimal_text(raw.value, at("value"), "value", Code::InvalidValue, issues).and_then(|(text, is_num)| {
        let places = currency.map_or(4, |c| u32::from(c.minor_units));
        match parse_decimal(text, places, is_num) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut msg = format!("value {}", e.describe(text));
                if let (AmountError::TooManyDecimals { .. }, Some(c)) = (&e, currency) {
                    msg.push_str(&format!(" for {}", c.as_str()));
                }
                issues.push(Code::InvalidValue, at("value"), msg);
                None
            }
        }
    });

    // Resolve FX and rate: only meaningful with a valid arrival date and regime.
    let (Some(date), Some(regime)) = (h.arrival_date, regime) else {
        return None;
    };
    let usd_per_unit = currency.and_then(|c| {
        let fx = ops.rates.usd_per_unit(c, date);
        if fx.is_none() {
            issues.push(
                Code::UnknownFxRate,
                at("currency"),
                format!(
                    "no {} to USD rate is on file for {date}; send the value in USD or ask for the rate to be added",
                    c.as_str()
                ),
            );
        }
        fx
    });
    let rate = match &regime.basis {
        Basis::Flat(r) => Some(*r),
        Basis::OriginTable => origin.and_then(|o| regime.origin_rate(o, date)),
        Basis::HtsTable => hts.and_then(|code| {
            let r = regime.hts_rate(code);
            if r.is_none() {
                issues.push(
                    Code::NoHtsRate,
                    at("hts"),
                    format!(
                        "hts {code} has no rate in the {} rate table; check the number",
                        regime.id
                    ),
                );
            }
            r
        }),
    };
    if issues.len() != before {
        return None;
    }
    let (description, origin, quantity, value, currency, usd_per_unit, rate) = (
        description?,
        origin?,
        quantity?,
        value?,
        currency?,
        usd_per_unit?,
        rate?,
    );
    Some(Item {
        index: j as u32,
        description,
        hts,
        origin,
        quantity,
        value,
        currency,
        value_usd: mul_round_cents(value, usd_per_unit),
        rate,
    })
}

/// Marks later occurrences of a tracking number within one manifest: the first one wins.
pub fn mark_duplicates(packages: &mut [Package<'_>]) {
    mark_duplicates_of(packages.iter_mut());
}

/// [`mark_duplicates`] of packages held elsewhere (in their outcomes).
pub(crate) fn mark_duplicates_of<'p, 'a: 'p>(packages: impl ExactSizeIterator<Item = &'p mut Package<'a>>) {
    let mut first: AHashMap<&str, u32> = AHashMap::with_capacity(packages.len());
    for pkg in packages {
        let Some(t) = pkg.tracking_number else {
            continue;
        };
        // One lookup: the entry of the tracking number.
        match first.entry(t) {
            Entry::Occupied(e) => {
                let at = *e.get();
                pkg.errors.push(Issue::new(
                    Code::DuplicateTrackingNumber,
                    Path::Package(pkg.index as usize, "tracking_number").render(),
                    format!("{t} already appears at $.packages[{at}] of this manifest; the first occurrence is kept"),
                ))
            }
            Entry::Vacant(e) => {
                e.insert(pkg.index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blank_and_trimmed_agree_with_unicode_trim() {
        for s in [
            "",
            " ",
            "\u{b}",
            "\u{a0}",
            " a ",
            "a",
            "\u{3000}x\u{3000}",
            "\u{1f}",
            "é ",
            "\u{b}ab\u{c}",
        ] {
            assert_eq!(is_blank(s), s.trim().is_empty(), "{s:?}");
            assert_eq!(trimmed_chars(s), s.trim().chars().count(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn description_length_is_the_trimmed_count(s in "\\PC{0,70}|[ a-z\u{e9}\u{4e2d}\u{1f600}]{0,80}|[a-z]{250,260}") {
            let n = s.trim().chars().count();
            let want = if (3..=256).contains(&n) { Ok(()) } else { Err(n) };
            prop_assert_eq!(description_length(&s), want);
            prop_assert_eq!(longer_than(&s, 16), s.chars().count() > 16);
        }

        #[test]
        fn fast_paths_match_trim(s in "\\PC{0,12}|[\t\n\u{b}\u{c}\r \u{1c}-\u{1f}a-c\u{a0}\u{85}é]{0,8}") {
            prop_assert_eq!(is_blank(&s), s.trim().is_empty());
            prop_assert_eq!(trimmed_chars(&s), s.trim().chars().count());
        }
    }
}
