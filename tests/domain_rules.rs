//! Worked examples of every rule in docs/domain.md (and the parts of docs/contracts.md they
//! touch), run through the public operators API with the shipped `config/`.
//!
//! Every expected amount is computed by hand from the rules and the data tables under
//! `config/`; the arithmetic is written next to each expectation. Rates referred to:
//! config/rates/ieepa_rates.csv (origin rates), regimes.toml (10 % flat under
//! section122_postal_2026, bands 80/160/200), hts_postal_entry_2026.csv, fx_rates.csv.

mod support;

use chrono::NaiveDate;
use dutyflow_operators::duty::{Duty, Exemption};
use dutyflow_operators::outcome::{Outcome, PackageOutcome};
use dutyflow_operators::rates::{Method, Month};
use dutyflow_operators::risk::{AccountHistory, Reason, Tier};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use support::*;

/// A carrier with no row in config/elections.csv: ad valorem every month.
const DL: &str = "DL";
/// Mid-October 2025, ieepa_postal_2025 (before the CN/HK/MO and CH changes).
const OCT_2025: &str = "2025-10-15T12:00:00-04:00";
/// section122_postal_2026 (10 % flat).
const MAR_2026: &str = "2026-03-02T13:05:00-05:00";
/// postal_entry_2026 (HTS table; EUR Q3 2026 rate 1.15768).
const AUG_2026: &str = "2026-08-03T12:00:00-04:00";

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn duty<'p>(p: &'p PackageOutcome<'static>) -> &'p Duty<'static> {
    p.duty.as_ref().expect("an accepted package has a duty")
}

fn regime_id(p: &PackageOutcome<'static>) -> &'static str {
    &ops().rates.regimes[duty(p).regime].id
}

/// One accepted package with `items`, from `carrier`, arriving at `arrival`.
fn assess(carrier: &str, arrival: &str, items: Vec<Value>) -> PackageOutcome<'static> {
    accepted_one(&manifest(carrier, arrival, vec![package(1, items)]))
}

/// `(origin, value_usd, rate, duty_usd)` of every line.
fn lines(p: &PackageOutcome<'static>) -> Vec<(String, Decimal, Decimal, Decimal)> {
    duty(p)
        .lines
        .iter()
        .map(|l| (l.origin.as_str().to_string(), l.value_usd, l.rate, l.duty_usd))
        .collect()
}

fn line(origin: &str, value: &str, rate: &str, duty: &str) -> (String, Decimal, Decimal, Decimal) {
    (origin.to_string(), dec(value), dec(rate), dec(duty))
}

/// The ad valorem duty on one USD item of `origin` worth `value` (one-package manifest).
fn ad_valorem(carrier: &str, arrival: &str, origin: &str, value: &str) -> (Decimal, Decimal) {
    let p = assess(carrier, arrival, vec![usd(origin, value)]);
    assert_eq!(duty(&p).method, Method::AdValorem);
    (duty(&p).lines[0].rate, duty(&p).total_usd)
}

fn reasons(p: &PackageOutcome<'static>) -> Vec<(Reason, u8)> {
    let mut r = p.risk.as_ref().expect("accepted packages are scored").reasons.clone();
    r.sort_by_key(|(reason, _)| reason.as_str());
    r
}

fn sorted(mut v: Vec<(Reason, u8)>) -> Vec<(Reason, u8)> {
    v.sort_by_key(|(reason, _)| reason.as_str());
    v
}

/// The regime id and US Eastern arrival date for an arrival time, or the header errors.
fn regime_at(arrival: &str) -> Result<(String, NaiveDate), Vec<(&'static str, String)>> {
    let m = manifest(DL, arrival, vec![package(1, vec![usd("VN", "100.00")])]);
    let out = manifest_outcome(run(&m));
    let p = &out.packages[0];
    if p.accepted() {
        Ok((regime_id(p).to_string(), out.header.arrival_date.unwrap()))
    } else {
        Err(errors(p))
    }
}

// ---------------------------------------------------------------------------------------------
// Rate regimes, chosen by the arrival date in US Eastern time
// ---------------------------------------------------------------------------------------------

#[test]
fn no_regime_before_2025_08_29_eastern() {
    // 03:59:59Z on 29 Aug is 23:59:59 EDT (UTC-4) on 28 Aug: out of scope, an exception for
    // every package, not a guess.
    let m = manifest(
        DL,
        "2025-08-29T03:59:59Z",
        vec![
            package(1, vec![usd("VN", "100.00")]),
            package(2, vec![usd("CN", "5.00")]),
        ],
    );
    let out = manifest_outcome(run(&m));
    assert_eq!(out.header.arrival_date, Some(date("2025-08-28")));
    assert_eq!(out.packages.len(), 2);
    for p in &out.packages {
        assert_eq!(errors(p), vec![("NO_RATE_REGIME", "$.trip.arrival_time".to_string())]);
        assert!(p.duty.is_none());
    }
    // 09:00 in Tokyo (+09:00) on 29 Aug is 00:00Z, i.e. 20:00 EDT on 28 Aug: still no regime.
    assert_eq!(
        regime_at("2025-08-29T09:00:00+09:00"),
        Err(vec![("NO_RATE_REGIME", "$.trip.arrival_time".to_string())])
    );
}

#[test]
fn ieepa_postal_2025_starts_at_midnight_eastern_on_2025_08_29() {
    // 04:00:00Z on 29 Aug is 00:00 EDT on 29 Aug.
    assert_eq!(
        regime_at("2025-08-29T04:00:00Z"),
        Ok(("ieepa_postal_2025".to_string(), date("2025-08-29")))
    );
    // VN 20 %: 100.00 × 0.20 = 20.00.
    assert_eq!(
        ad_valorem(DL, "2025-08-29T04:00:00Z", "VN", "100.00"),
        (dec("0.20"), dec("20.00"))
    );
}

#[test]
fn ieepa_ends_2026_02_23_and_section122_starts_2026_02_24_eastern() {
    // 04:59:59Z on 24 Feb is 23:59:59 EST (UTC-5) on 23 Feb: still IEEPA, VN 20 %.
    assert_eq!(
        regime_at("2026-02-24T04:59:59Z"),
        Ok(("ieepa_postal_2025".to_string(), date("2026-02-23")))
    );
    // 100.00 × 0.20 = 20.00.
    assert_eq!(
        ad_valorem(DL, "2026-02-24T04:59:59Z", "VN", "100.00"),
        (dec("0.20"), dec("20.00"))
    );
    // 05:00:00Z on 24 Feb is 00:00 EST: section 122, 10 % for every origin.
    assert_eq!(
        regime_at("2026-02-24T05:00:00Z"),
        Ok(("section122_postal_2026".to_string(), date("2026-02-24")))
    );
    // 100.00 × 0.10 = 10.00.
    assert_eq!(
        ad_valorem(DL, "2026-02-24T05:00:00Z", "VN", "100.00"),
        (dec("0.10"), dec("10.00"))
    );
}

#[test]
fn section122_is_flat_10_percent_for_every_origin() {
    // Origins that had 50 %, 41 %, 30 % and 10 % under IEEPA all pay 10 %: 200.00 × 0.10 = 20.00.
    for origin in ["BR", "SY", "CN", "IN", "CH", "GB", "FR", "AU"] {
        assert_eq!(
            ad_valorem(DL, MAR_2026, origin, "200.00"),
            (dec("0.10"), dec("20.00")),
            "{origin}"
        );
    }
}

#[test]
fn postal_entry_2026_starts_2026_07_24_eastern() {
    // 03:59:59Z on 24 Jul is 23:59:59 EDT on 23 Jul: section 122, 100.00 × 0.10 = 10.00.
    assert_eq!(
        regime_at("2026-07-24T03:59:59Z"),
        Ok(("section122_postal_2026".to_string(), date("2026-07-23")))
    );
    let p = assess(DL, "2026-07-24T03:59:59Z", vec![usd("VN", "100.00")]);
    assert_eq!(duty(&p).total_usd, dec("10.00"));
    // 04:00:00Z is 00:00 EDT on 24 Jul: postal entry, HTS 6109100012 at 0.165:
    // 100.00 × 0.165 = 16.50.
    assert_eq!(
        regime_at("2026-07-24T04:00:00Z"),
        Ok(("postal_entry_2026".to_string(), date("2026-07-24")))
    );
    let p = assess(DL, "2026-07-24T04:00:00Z", vec![usd("VN", "100.00")]);
    assert_eq!(lines(&p), vec![line("VN", "100.00", "0.165", "16.50")]);
    assert_eq!(duty(&p).total_usd, dec("16.50"));
}

#[test]
fn arrival_date_follows_dst_in_march() {
    // DST starts 2026-03-08 at 02:00 local (07:00Z). 04:30Z on 8 Mar is before it: EST,
    // 23:30 on 7 Mar.
    assert_eq!(regime_at("2026-03-08T04:30:00Z").unwrap().1, date("2026-03-07"));
    // 04:30Z on 9 Mar is after it: EDT (UTC-4), 00:30 on 9 Mar (EST would give 8 Mar).
    assert_eq!(regime_at("2026-03-09T04:30:00Z").unwrap().1, date("2026-03-09"));
    // The month follows the Eastern date: 03:30Z on 1 Apr is 23:30 EDT on 31 Mar.
    let m = manifest(DL, "2026-04-01T03:30:00Z", vec![package(1, vec![usd("VN", "1.00")])]);
    let out = manifest_outcome(run(&m));
    assert_eq!(out.header.arrival_date, Some(date("2026-03-31")));
    assert_eq!(out.header.month, Some(Month { year: 2026, month: 3 }));
}

#[test]
fn arrival_date_follows_dst_in_november() {
    // DST ends 2025-11-02 at 02:00 local (06:00Z). 04:30Z on 3 Nov is EST: 23:30 on 2 Nov.
    assert_eq!(regime_at("2025-11-03T04:30:00Z").unwrap().1, date("2025-11-02"));
    // 03:30Z on 1 Nov is still EDT: 23:30 on 31 Oct, so October (LH elected specific for
    // 2025-10 in config/elections.csv): VN 20 % is in the 16-25 % band, $160.
    let p = assess("LH", "2025-11-01T03:30:00Z", vec![usd("VN", "10.00")]);
    assert_eq!(duty(&p).method, Method::Specific);
    assert_eq!(duty(&p).total_usd, dec("160.00"));
    // 04:30Z on 1 Nov is 00:30 EDT on 1 Nov: November, no election, ad valorem:
    // 10.00 × 0.20 = 2.00.
    let p = assess("LH", "2025-11-01T04:30:00Z", vec![usd("VN", "10.00")]);
    assert_eq!(duty(&p).method, Method::AdValorem);
    assert_eq!(duty(&p).total_usd, dec("2.00"));
}

// ---------------------------------------------------------------------------------------------
// Effective-dated IEEPA rates (config/rates/ieepa_rates.csv)
// ---------------------------------------------------------------------------------------------

#[test]
fn cn_hk_mo_30_percent_to_2025_11_09_then_20_percent() {
    for origin in ["CN", "HK", "MO"] {
        // 100.00 × 0.30 = 30.00 on the last day of the 30 % row.
        assert_eq!(
            ad_valorem(DL, "2025-11-09T12:00:00-05:00", origin, "100.00"),
            (dec("0.30"), dec("30.00")),
            "{origin} on 2025-11-09"
        );
        // 100.00 × 0.20 = 20.00 from 2025-11-10.
        assert_eq!(
            ad_valorem(DL, "2025-11-10T12:00:00-05:00", origin, "100.00"),
            (dec("0.20"), dec("20.00")),
            "{origin} on 2025-11-10"
        );
    }
    // Near midnight: 04:30Z on 10 Nov is 23:30 EST on 9 Nov (30 %); 05:00Z is 10 Nov (20 %).
    assert_eq!(
        ad_valorem(DL, "2025-11-10T04:30:00Z", "CN", "100.00"),
        (dec("0.30"), dec("30.00"))
    );
    assert_eq!(
        ad_valorem(DL, "2025-11-10T05:00:00Z", "CN", "100.00"),
        (dec("0.20"), dec("20.00"))
    );
}

#[test]
fn in_50_percent_to_2026_02_06_then_25_percent() {
    // 100.00 × 0.50 = 50.00; from 7 Feb 100.00 × 0.25 = 25.00.
    assert_eq!(
        ad_valorem(DL, "2026-02-06T12:00:00-05:00", "IN", "100.00"),
        (dec("0.50"), dec("50.00"))
    );
    assert_eq!(
        ad_valorem(DL, "2026-02-07T12:00:00-05:00", "IN", "100.00"),
        (dec("0.25"), dec("25.00"))
    );
}

#[test]
fn ch_39_percent_to_2025_11_13_then_15_percent() {
    // 100.00 × 0.39 = 39.00; from 14 Nov 100.00 × 0.15 = 15.00.
    assert_eq!(
        ad_valorem(DL, "2025-11-13T12:00:00-05:00", "CH", "100.00"),
        (dec("0.39"), dec("39.00"))
    );
    assert_eq!(
        ad_valorem(DL, "2025-11-14T12:00:00-05:00", "CH", "100.00"),
        (dec("0.15"), dec("15.00"))
    );
}

#[test]
fn origin_not_listed_takes_the_10_percent_default() {
    // AU, AR and SG have no row: default 10 %. 47.00 × 0.10 = 4.70 (CBP's own example).
    for origin in ["AU", "AR", "SG"] {
        assert_eq!(
            ad_valorem(DL, OCT_2025, origin, "47.00"),
            (dec("0.10"), dec("4.70")),
            "{origin}"
        );
    }
}

#[test]
fn eu_members_pay_15_percent() {
    // Every EU member state: 100.00 × 0.15 = 15.00.
    for origin in [
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU",
        "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
    ] {
        assert_eq!(
            ad_valorem(DL, OCT_2025, origin, "100.00"),
            (dec("0.15"), dec("15.00")),
            "{origin}"
        );
    }
}

#[test]
fn brazil_pays_50_percent() {
    // 45.00 × 0.50 = 22.50 (CBP's own example).
    assert_eq!(ad_valorem(DL, OCT_2025, "BR", "45.00"), (dec("0.50"), dec("22.50")));
}

#[test]
fn every_listed_origin_rate_of_the_brief() {
    // On 2025-12-01: after the CN/HK/MO and CH changes, before the IN change.
    // Value 1000.00, so duty = rate × 1000 exactly.
    let table: &[(&[&str], &str, &str)] = &[
        (&["CN", "HK", "MO"], "0.20", "200.00"),
        (&["BR"], "0.50", "500.00"),
        (&["CA"], "0.35", "350.00"),
        (&["MX"], "0.25", "250.00"),
        (&["IN"], "0.50", "500.00"),
        (&["CH"], "0.15", "150.00"),
        (&["JP", "KR"], "0.15", "150.00"),
        (&["GB"], "0.10", "100.00"),
        (&["VN", "TW", "BD", "LK"], "0.20", "200.00"),
        (&["TH", "ID", "MY", "PH", "KH", "PK"], "0.19", "190.00"),
        (&["NI"], "0.18", "180.00"),
        (&["BN", "KZ", "MD", "TN"], "0.25", "250.00"),
        (&["ZA", "DZ", "LY", "BA"], "0.30", "300.00"),
        (&["IQ", "RS"], "0.35", "350.00"),
        (&["LA", "MM"], "0.40", "400.00"),
        (&["SY"], "0.41", "410.00"),
        (
            &["IL", "TR", "NO", "IS", "NZ", "GH", "NG", "CR", "EC", "LI"],
            "0.15",
            "150.00",
        ),
    ];
    for (origins, rate, total) in table {
        for origin in *origins {
            assert_eq!(
                ad_valorem(DL, "2025-12-01T12:00:00-05:00", origin, "1000.00"),
                (dec(rate), dec(total)),
                "{origin}"
            );
        }
    }
}

#[test]
fn country_of_origin_not_departure_country_sets_the_rate() {
    // The conveyance leaves from China (30 % in October 2025), but the goods were made in
    // Vietnam (20 %): 100.00 × 0.20 = 20.00.
    let mut m = manifest(DL, OCT_2025, vec![package(1, vec![usd("VN", "100.00")])]);
    m["trip"]["departure_country"] = json!("CN");
    m["packages"][0]["shipper"]["country"] = json!("CN");
    let p = accepted_one(&m);
    assert_eq!(lines(&p), vec![line("VN", "100.00", "0.20", "20.00")]);
}

#[test]
fn several_origins_in_one_package_each_line_at_its_own_rate() {
    // October 2025, ad valorem:
    //   CN 100.00 × 0.30 = 30.00
    //   FR  50.00 × 0.15 =  7.50
    //   AU  20.00 × 0.10 =  2.00 (default)
    //   BR   0.65 × 0.50 =  0.325 -> 0.33 (half-up)
    // total 39.83; value 170.65.
    let p = assess(
        DL,
        OCT_2025,
        vec![
            usd("CN", "100.00"),
            usd("FR", "50.00"),
            usd("AU", "20.00"),
            usd("BR", "0.65"),
        ],
    );
    assert_eq!(
        lines(&p),
        vec![
            line("CN", "100.00", "0.30", "30.00"),
            line("FR", "50.00", "0.15", "7.50"),
            line("AU", "20.00", "0.10", "2.00"),
            line("BR", "0.65", "0.50", "0.33"),
        ]
    );
    assert_eq!(duty(&p).value_usd, dec("170.65"));
    assert_eq!(duty(&p).total_usd, dec("39.83"));
}

// ---------------------------------------------------------------------------------------------
// The specific method (LH elected it for 2025-10, AF for 2025-12 in config/elections.csv)
// ---------------------------------------------------------------------------------------------

fn specific(carrier: &str, arrival: &str, items: Vec<Value>) -> Decimal {
    let p = assess(carrier, arrival, items);
    let d = duty(&p);
    assert_eq!(d.method, Method::Specific);
    assert_eq!(d.exemption, None);
    // The flat amount is the package's duty: the lines add up to it.
    let sum: Decimal = d.lines.iter().map(|l| l.duty_usd).sum();
    assert_eq!(sum, d.total_usd);
    d.total_usd
}

#[test]
fn specific_method_bands_by_origin_rate() {
    // rate < 16 % -> $80: GB 10 %, FR 15 %, AU 10 % (default). The value does not matter.
    assert_eq!(specific("LH", OCT_2025, vec![usd("GB", "500.00")]), dec("80.00"));
    assert_eq!(specific("LH", OCT_2025, vec![usd("FR", "1.00")]), dec("80.00"));
    assert_eq!(specific("LH", OCT_2025, vec![usd("AU", "30.00")]), dec("80.00"));
    // 16 % <= rate <= 25 % -> $160: NI 18 %, VN 20 %, MX exactly 25 % (inclusive).
    assert_eq!(specific("LH", OCT_2025, vec![usd("NI", "20.00")]), dec("160.00"));
    assert_eq!(specific("LH", OCT_2025, vec![usd("VN", "20.00")]), dec("160.00"));
    assert_eq!(specific("LH", OCT_2025, vec![usd("MX", "20.00")]), dec("160.00"));
    // rate > 25 % -> $200: CN 30 % (October), CH 39 % (before 14 Nov), BR 50 %.
    assert_eq!(specific("LH", OCT_2025, vec![usd("CN", "20.00")]), dec("200.00"));
    assert_eq!(specific("LH", OCT_2025, vec![usd("CH", "20.00")]), dec("200.00"));
    assert_eq!(specific("LH", OCT_2025, vec![usd("BR", "20.00")]), dec("200.00"));
}

#[test]
fn specific_method_highest_origin_rate_picks_the_band() {
    // FR 15 % and MX 25 %: highest 25 % -> $160.
    assert_eq!(
        specific("LH", OCT_2025, vec![usd("FR", "90.00"), usd("MX", "1.00")]),
        dec("160.00")
    );
    // GB 10 % and CN 30 %: highest 30 % -> $200.
    assert_eq!(
        specific("LH", OCT_2025, vec![usd("GB", "90.00"), usd("CN", "1.00")]),
        dec("200.00")
    );
    // GB 10 % and FR 15 %: highest 15 % -> $80.
    assert_eq!(
        specific("LH", OCT_2025, vec![usd("GB", "90.00"), usd("FR", "1.00")]),
        dec("80.00")
    );
}

#[test]
fn specific_method_is_per_carrier_and_month() {
    // AF elected specific for 2025-12: CN is 20 % from 10 Nov -> $160.
    assert_eq!(
        specific("AF", "2025-12-05T12:00:00-05:00", vec![usd("CN", "20.00")]),
        dec("160.00")
    );
    // AF in November and LH in December: no election, ad valorem, 20.00 × 0.20 = 4.00.
    for (carrier, arrival) in [("AF", "2025-11-20T12:00:00-05:00"), ("LH", "2025-12-05T12:00:00-05:00")] {
        let p = assess(carrier, arrival, vec![usd("CN", "20.00")]);
        assert_eq!(duty(&p).method, Method::AdValorem, "{carrier}");
        assert_eq!(duty(&p).total_usd, dec("4.00"), "{carrier}");
    }
    // A different carrier in October: ad valorem, 20.00 × 0.30 = 6.00.
    let p = assess(DL, OCT_2025, vec![usd("CN", "20.00")]);
    assert_eq!(duty(&p).method, Method::AdValorem);
    assert_eq!(duty(&p).total_usd, dec("6.00"));
}

#[test]
fn specific_election_outside_an_ieepa_month_falls_back_to_ad_valorem_with_a_warning() {
    // A modified config where LH elects specific for 2026-03 (section122 offers no specific
    // method): assessed ad valorem, 85.00 × 0.10 = 8.50, with SPECIFIC_METHOD_UNAVAILABLE.
    let ops = ops_with_edits(
        "specific-unavailable",
        &[(
            "elections.csv",
            "LH,2025-10,specific",
            "LH,2025-10,specific\nLH,2026-03,specific",
        )],
    );
    let m = manifest("LH", MAR_2026, vec![package(1, vec![usd("VN", "85.00")])]);
    let out = manifest_outcome(run_with(&ops, &m));
    let p = &out.packages[0];
    assert!(p.accepted(), "{:?}", errors(p));
    assert_eq!(duty(p).method, Method::AdValorem);
    assert_eq!(duty(p).total_usd, dec("8.50"));
    let warnings: Vec<_> = p
        .package
        .warnings
        .iter()
        .map(|w| (w.code.as_str(), w.field.to_string()))
        .collect();
    assert_eq!(
        warnings,
        vec![("SPECIFIC_METHOD_UNAVAILABLE", "$.trip.arrival_time".to_string())]
    );
}

// ---------------------------------------------------------------------------------------------
// Money: decimal, per-line half-up rounding, package total = sum of lines
// ---------------------------------------------------------------------------------------------

#[test]
fn duty_lines_round_half_up_where_bankers_rounding_differs() {
    // section122, 10 %. Each exact product ends in 5 at the third decimal with an even cent
    // digit, so banker's rounding would round down.
    for (value, expected) in [
        ("0.25", "0.03"),    // 0.025 -> 0.03 (banker's 0.02)
        ("1.25", "0.13"),    // 0.125 -> 0.13 (banker's 0.12)
        ("0.45", "0.05"),    // 0.045 -> 0.05 (banker's 0.04)
        ("3.45", "0.35"),    // 0.345 -> 0.35 (banker's 0.34)
        ("100.05", "10.01"), // 10.005 -> 10.01 (banker's 10.00)
    ] {
        assert_eq!(
            ad_valorem(DL, MAR_2026, "VN", value),
            (dec("0.10"), dec(expected)),
            "{value}"
        );
    }
    // IEEPA rates, October 2025.
    // FR 1.50 × 0.15 = 0.225 -> 0.23 (banker's 0.22)
    assert_eq!(ad_valorem(DL, OCT_2025, "FR", "1.50").1, dec("0.23"));
    // BR 0.65 × 0.50 = 0.325 -> 0.33 (banker's 0.32)
    assert_eq!(ad_valorem(DL, OCT_2025, "BR", "0.65").1, dec("0.33"));
    // CN 0.35 × 0.30 = 0.105 -> 0.11 (banker's 0.10)
    assert_eq!(ad_valorem(DL, OCT_2025, "CN", "0.35").1, dec("0.11"));
    // Postal entry, HTS 6109100012 at 0.165: 85.00 × 0.165 = 14.025 -> 14.03 (banker's 14.02)
    assert_eq!(ad_valorem(DL, AUG_2026, "VN", "85.00").1, dec("14.03"));
}

#[test]
fn package_total_is_the_sum_of_rounded_lines() {
    // Two lines of 0.25 at 10 %: 0.025 -> 0.03 each, total 0.06 (rounding the package value
    // 0.50 × 0.10 = 0.05 would give 0.05).
    let p = assess(DL, MAR_2026, vec![usd("VN", "0.25"), usd("CN", "0.25")]);
    assert_eq!(
        lines(&p),
        vec![line("VN", "0.25", "0.10", "0.03"), line("CN", "0.25", "0.10", "0.03")]
    );
    assert_eq!(duty(&p).total_usd, dec("0.06"));
}

#[test]
fn amounts_are_read_exactly_as_written() {
    // A JSON number 19.99 is 19.99, not the nearest double: 19.99 × 0.10 = 1.999 -> 2.00.
    let mut it = usd("VN", "0");
    it["value"] = json!(19.99);
    let p = assess(DL, MAR_2026, vec![it]);
    assert_eq!(lines(&p), vec![line("VN", "19.99", "0.10", "2.00")]);
    // An exponent in a JSON number: 1.5e2 = 150, × 0.10 = 15.00; trailing zeros in a string
    // are fine: "85.000" = 85.00, × 0.10 = 8.50.
    let raw = serde_json::to_string(&manifest(
        DL,
        MAR_2026,
        vec![package(1, vec![usd("VN", "@A@"), usd("VN", "85.000")])],
    ))
    .unwrap()
    .replace("\"@A@\"", "1.5e2");
    let out = manifest_outcome(run_bytes(raw.into_bytes()));
    let p = &out.packages[0];
    assert!(p.accepted(), "{:?}", errors(p));
    assert_eq!(
        lines(p),
        vec![
            line("VN", "150.00", "0.10", "15.00"),
            line("VN", "85.00", "0.10", "8.50")
        ]
    );
}

#[test]
fn usd_with_three_decimals_and_jpy_with_decimals_are_refused() {
    // Minor units matter: USD has 2, JPY 0.
    let p = packages(&manifest(DL, MAR_2026, vec![package(1, vec![usd("VN", "19.999")])]));
    assert_eq!(
        errors(&p[0]),
        vec![("INVALID_VALUE", "$.packages[0].items[0].value".to_string())]
    );
    let p = packages(&manifest(
        DL,
        MAR_2026,
        vec![package(1, vec![item("JP", "1000.5", "JPY")])],
    ));
    assert_eq!(
        errors(&p[0]),
        vec![("INVALID_VALUE", "$.packages[0].items[0].value".to_string())]
    );
}

// ---------------------------------------------------------------------------------------------
// FX: dated quarterly rates, per-line conversion rounded to the cent
// ---------------------------------------------------------------------------------------------

#[test]
fn eur_converts_with_the_quarterly_rate_of_the_arrival_date() {
    // 2026-03-02 is in Q1 2026: EUR 1.16464.
    //   240.00 EUR × 1.16464 = 279.5136 -> 279.51 USD; × 0.10 = 27.951 -> 27.95
    //     9.50 EUR × 1.16464 =  11.06408 -> 11.06 USD; × 0.10 =  1.106 -> 1.11
    //   value 290.57, total 29.06.
    let mut lens = item("JP", "240.00", "EUR");
    lens["hts"] = json!("900211");
    let mut cap = item("CN", "0", "EUR");
    cap["value"] = json!(9.5);
    let p = assess(DL, MAR_2026, vec![lens.clone(), cap]);
    assert_eq!(
        lines(&p),
        vec![
            line("JP", "279.51", "0.10", "27.95"),
            line("CN", "11.06", "0.10", "1.11")
        ]
    );
    assert_eq!(duty(&p).value_usd, dec("290.57"));
    assert_eq!(duty(&p).total_usd, dec("29.06"));
    // 2026-04-15 is in Q2: EUR 1.1716. 240.00 × 1.1716 = 281.184 -> 281.18; × 0.10 = 28.118 -> 28.12.
    let p = assess(DL, "2026-04-15T12:00:00-04:00", vec![lens.clone()]);
    assert_eq!(lines(&p), vec![line("JP", "281.18", "0.10", "28.12")]);
    // 03:30Z on 1 Apr is 23:30 EDT on 31 Mar: still Q1, 279.51 as above.
    let p = assess(DL, "2026-04-01T03:30:00Z", vec![lens]);
    assert_eq!(lines(&p), vec![line("JP", "279.51", "0.10", "27.95")]);
}

#[test]
fn converted_values_round_half_up_to_the_cent_before_the_rate() {
    // 2025-09-15, Q3 2025 rates. CAD 0.725: 1.00 CAD = 0.725 -> 0.73 USD (banker's 0.72);
    // CA 35 %: 0.73 × 0.35 = 0.2555 -> 0.26 (0.725 × 0.35 = 0.25375 would give 0.25).
    let p = assess(DL, "2025-09-15T12:00:00-04:00", vec![item("CA", "1.00", "CAD")]);
    assert_eq!(lines(&p), vec![line("CA", "0.73", "0.35", "0.26")]);
    // GBP 1.34: 0.75 GBP = 1.005 -> 1.01 USD (banker's 1.00); GB 10 %: 0.101 -> 0.10.
    let p = assess(DL, "2025-09-15T12:00:00-04:00", vec![item("GB", "0.75", "GBP")]);
    assert_eq!(lines(&p), vec![line("GB", "1.01", "0.10", "0.10")]);
    // JPY (no minor units), Q1 2026 0.006827: 10000 JPY = 68.27 USD; × 0.10 = 6.827 -> 6.83.
    let p = assess(DL, MAR_2026, vec![item("JP", "10000", "JPY")]);
    assert_eq!(lines(&p), vec![line("JP", "68.27", "0.10", "6.83")]);
}

#[test]
fn unknown_currency_or_date_without_rate_is_an_exception_never_1_to_1() {
    // AED is ISO 4217 but has no row in fx_rates.csv.
    let p = packages(&manifest(
        DL,
        MAR_2026,
        vec![package(1, vec![item("AE", "100.00", "AED")])],
    ));
    assert_eq!(
        errors(&p[0]),
        vec![("UNKNOWN_FX_RATE", "$.packages[0].items[0].currency".to_string())]
    );
    assert!(p[0].duty.is_none());
    // EUR rows end 2026-12-31: an arrival on 2027-01-04 has no rate.
    let p = packages(&manifest(
        DL,
        "2027-01-04T12:00:00-05:00",
        vec![package(1, vec![item("FR", "100.00", "EUR")])],
    ));
    assert_eq!(
        errors(&p[0]),
        vec![("UNKNOWN_FX_RATE", "$.packages[0].items[0].currency".to_string())]
    );
    // A code that is not ISO 4217 at all.
    let p = packages(&manifest(
        DL,
        MAR_2026,
        vec![package(1, vec![item("FR", "100.00", "EUD")])],
    ));
    assert_eq!(
        errors(&p[0]),
        vec![("INVALID_CURRENCY", "$.packages[0].items[0].currency".to_string())]
    );
}

// ---------------------------------------------------------------------------------------------
// Exemptions
// ---------------------------------------------------------------------------------------------

fn gift(serial: u32, items: Vec<Value>) -> Value {
    let mut p = package(serial, items);
    p["category"] = json!("gift");
    p
}

#[test]
fn gift_of_exactly_100_usd_is_exempt_and_recorded() {
    let p = accepted_one(&manifest(DL, MAR_2026, vec![gift(1, vec![usd("VN", "100.00")])]));
    let d = duty(&p);
    assert_eq!(d.method, Method::Exempt);
    assert_eq!(d.exemption, Some(Exemption::Gift));
    // Recorded with its value, zero rate and zero duty.
    assert_eq!(lines(&p), vec![line("VN", "100.00", "0", "0.00")]);
    assert_eq!(d.value_usd, dec("100.00"));
    assert_eq!(d.total_usd, Decimal::ZERO);
    assert!(!reasons(&p).iter().any(|(r, _)| *r == Reason::GiftAboveExemption));
    // Two lines adding up to exactly 100.00 (60.00 + 40.00): exempt too.
    let p = accepted_one(&manifest(
        DL,
        MAR_2026,
        vec![gift(1, vec![usd("VN", "60.00"), usd("CN", "40.00")])],
    ));
    assert_eq!(duty(&p).exemption, Some(Exemption::Gift));
    assert_eq!(duty(&p).total_usd, Decimal::ZERO);
}

#[test]
fn gift_of_100_01_usd_is_dutiable_and_flagged() {
    // 100.01 × 0.10 = 10.001 -> 10.00; risk GIFT_ABOVE_EXEMPTION (20 points, risk.toml).
    let p = accepted_one(&manifest(DL, MAR_2026, vec![gift(1, vec![usd("VN", "100.01")])]));
    assert_eq!(duty(&p).method, Method::AdValorem);
    assert_eq!(duty(&p).exemption, None);
    assert_eq!(duty(&p).total_usd, dec("10.00"));
    assert_eq!(reasons(&p), vec![(Reason::GiftAboveExemption, 20)]);
}

#[test]
fn gift_exemption_compares_the_usd_value() {
    // 86.00 EUR × 1.16464 (Q1 2026) = 100.15904 -> 100.16 USD > 100: dutiable,
    // 100.16 × 0.10 = 10.016 -> 10.02.
    let p = accepted_one(&manifest(DL, MAR_2026, vec![gift(1, vec![item("FR", "86.00", "EUR")])]));
    assert_eq!(duty(&p).exemption, None);
    assert_eq!(lines(&p), vec![line("FR", "100.16", "0.10", "10.02")]);
    assert_eq!(reasons(&p), vec![(Reason::GiftAboveExemption, 20)]);
}

#[test]
fn gift_exemption_applies_under_the_specific_method_too() {
    // LH, October 2025 (specific): a 100.00 gift owes nothing instead of $200 for CN.
    let p = accepted_one(&manifest("LH", OCT_2025, vec![gift(1, vec![usd("CN", "100.00")])]));
    assert_eq!(duty(&p).method, Method::Exempt);
    assert_eq!(duty(&p).exemption, Some(Exemption::Gift));
    assert_eq!(duty(&p).total_usd, Decimal::ZERO);
}

#[test]
fn documents_are_exempt_whatever_their_value() {
    let mut p = package(1, vec![usd("DE", "500.00")]);
    p["category"] = json!("documents");
    p["items"][0]["description"] = json!("Printed contract papers");
    let p = accepted_one(&manifest(DL, MAR_2026, vec![p]));
    assert_eq!(duty(&p).method, Method::Exempt);
    assert_eq!(duty(&p).exemption, Some(Exemption::Documents));
    assert_eq!(duty(&p).value_usd, dec("500.00"));
    assert_eq!(duty(&p).total_usd, Decimal::ZERO);
    // Merchandise has no de minimis: 50.00 × 0.10 = 5.00.
    assert_eq!(ad_valorem(DL, MAR_2026, "DE", "50.00").1, dec("5.00"));
}

// ---------------------------------------------------------------------------------------------
// Reference formats
// ---------------------------------------------------------------------------------------------

#[test]
fn uk_is_read_as_gb() {
    // Origin and shipper country written UK: assessed as GB (10 % in October 2025):
    // 100.00 × 0.10 = 10.00, and the line says GB.
    let mut p = package(1, vec![usd("UK", "100.00")]);
    p["shipper"]["country"] = json!("UK");
    let m = manifest(DL, OCT_2025, vec![p]);
    let out = run(&m);
    let lines_json = encoded(&out);
    let p = &manifest_outcome(out).packages[0];
    assert!(p.accepted(), "{:?}", errors(p));
    assert_eq!(lines(p), vec![line("GB", "100.00", "0.10", "10.00")]);
    assert_eq!(
        p.package.shipper_country.map(|c| c.as_str().to_string()),
        Some("GB".to_string())
    );
    assert_eq!(lines_json[0]["duty"]["lines"][0]["origin_country"], "GB");
}

#[test]
fn names_of_more_than_256_characters_are_rejected() {
    // Characters, not bytes: 256 two-byte letters are a name of 256 characters.
    let mut ok = package(1, vec![usd("DE", "10.00")]);
    ok["shipper"]["name"] = json!("é".repeat(256));
    ok["consignee"]["name"] = json!("a".repeat(256));
    let mut long = package(2, vec![usd("DE", "10.00")]);
    long["shipper"]["name"] = json!("é".repeat(257));
    long["consignee"]["name"] = json!("a".repeat(300));
    let out = packages(&manifest(DL, OCT_2025, vec![ok, long]));
    assert!(out[0].accepted(), "{:?}", errors(&out[0]));
    assert_eq!(
        errors(&out[1]),
        vec![
            ("INVALID_NAME", "$.packages[1].shipper.name".to_string()),
            ("INVALID_NAME", "$.packages[1].consignee.name".to_string()),
        ]
    );
    let messages: Vec<&str> = out[1].package.errors.iter().map(|i| i.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "shipper.name is longer than 256 characters",
            "consignee.name is longer than 256 characters"
        ]
    );
}

#[test]
fn s10_check_digit_of_the_brief_and_service_indicators() {
    // Serial 47312482 -> sum 200 -> 11 - 200 mod 11 = 11 - 2 = 9: RR473124829DE is valid.
    assert_eq!(s10_check(47312482), 9);
    let ok = |t: &str| {
        let mut p = package(1, vec![usd("VN", "1.00")]);
        p["tracking_number"] = json!(t);
        errors(&packages(&manifest(DL, MAR_2026, vec![p]))[0])
    };
    assert_eq!(ok("RR473124829DE"), vec![]);
    // sum mod 11 = 0 -> 11 -> 5: serial 00000000 gives check digit 5.
    assert_eq!(ok("EE000000005US"), vec![]);
    // sum mod 11 = 1 -> 10 -> 0: serial 00060000 (6 × 2 = 12) gives check digit 0.
    assert_eq!(ok("CP000600000CN"), vec![]);
    let field = "$.packages[0].tracking_number".to_string();
    assert_eq!(ok("RR473124828DE"), vec![("TRACKING_CHECK_DIGIT", field.clone())]);
    // J and K service indicators are reserved.
    assert_eq!(ok("JA473124829DE"), vec![("INVALID_TRACKING_NUMBER", field.clone())]);
    assert_eq!(ok("KB473124829DE"), vec![("INVALID_TRACKING_NUMBER", field.clone())]);
    // 13 characters exactly.
    assert_eq!(ok("RR4731248290DE"), vec![("INVALID_TRACKING_NUMBER", field)]);
}

#[test]
fn duplicate_tracking_number_in_one_manifest_first_wins() {
    let t = s10(47312482);
    let mut third = package(3, vec![usd("VN", "10.00")]);
    third["tracking_number"] = json!(t);
    let m = manifest(
        DL,
        MAR_2026,
        vec![
            package(47312482, vec![usd("VN", "10.00")]),
            package(2, vec![usd("VN", "10.00")]),
            third,
        ],
    );
    let p = packages(&m);
    assert!(p[0].accepted() && p[1].accepted());
    assert_eq!(
        errors(&p[2]),
        vec![("DUPLICATE_TRACKING_NUMBER", "$.packages[2].tracking_number".to_string())]
    );
    assert!(p[2].duty.is_none());
    // The first occurrence wins even when it is itself rejected (contract §1).
    let mut second = package(5, vec![usd("VN", "10.00")]);
    second["tracking_number"] = json!(t);
    let m = manifest(
        DL,
        MAR_2026,
        vec![package(47312482, vec![item("VN", "10.00", "XYZ")]), second],
    );
    let p = packages(&m);
    assert_eq!(
        errors(&p[0]),
        vec![("INVALID_CURRENCY", "$.packages[0].items[0].currency".to_string())]
    );
    assert_eq!(
        errors(&p[1]),
        vec![("DUPLICATE_TRACKING_NUMBER", "$.packages[1].tracking_number".to_string())]
    );
}

// ---------------------------------------------------------------------------------------------
// Header errors reject every package
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_port_rejects_every_package_which_keeps_its_own_errors() {
    let m = {
        let mut m = manifest(
            DL,
            MAR_2026,
            vec![
                package(1, vec![usd("VN", "10.00")]),
                package(2, vec![item("VN", "10.00", "XYZ")]),
                package(3, vec![usd("CN", "20.00")]),
            ],
        );
        m["trip"]["port_of_arrival"] = json!("47O1");
        m
    };
    let p = packages(&m);
    let port = ("INVALID_PORT", "$.trip.port_of_arrival".to_string());
    assert_eq!(errors(&p[0]), vec![port.clone()]);
    assert_eq!(
        errors(&p[1]),
        vec![
            port.clone(),
            ("INVALID_CURRENCY", "$.packages[1].items[0].currency".to_string())
        ]
    );
    assert_eq!(errors(&p[2]), vec![port]);
    assert!(p.iter().all(|p| p.duty.is_none() && p.risk.is_none()));
}

#[test]
fn several_header_errors_are_all_on_every_package() {
    let mut m = manifest(
        DL,
        MAR_2026,
        vec![
            package(1, vec![usd("VN", "10.00")]),
            package(2, vec![usd("VN", "10.00")]),
        ],
    );
    m["carrier"] = json!({"code": "DLH", "code_type": "iata"});
    m["trip"]["departure_country"] = json!("XX");
    m["trip"]["departure_time"] = json!("2026-03-03T10:00:00Z");
    for p in packages(&m) {
        let mut e = errors(&p);
        e.sort();
        assert_eq!(
            e,
            vec![
                ("INVALID_CARRIER_CODE", "$.carrier.code".to_string()),
                ("INVALID_COUNTRY", "$.trip.departure_country".to_string()),
                // departure 2026-03-03T10:00Z is after arrival 2026-03-02T18:05Z.
                ("INVALID_DATE", "$.trip.departure_time".to_string()),
            ]
        );
    }
}

#[test]
fn header_error_does_not_add_a_false_zero_value_warning() {
    let mut m = manifest(DL, MAR_2026, vec![package(1, vec![usd("VN", "85.00")])]);
    m["trip"]["arrival_time"] = json!("2026-03-02T13:05:00");
    let p = packages(&m);
    assert_eq!(errors(&p[0]), vec![("INVALID_DATE", "$.trip.arrival_time".to_string())]);
    // The item is declared at 85.00: a warning that "every item is declared at 0" is false.
    let warnings: Vec<_> = p[0].package.warnings.iter().map(|w| w.code.as_str()).collect();
    assert!(!warnings.contains(&"ZERO_DECLARED_VALUE"), "{warnings:?}");
}

#[test]
fn zero_value_merchandise_is_accepted_with_a_warning() {
    let p = accepted_one(&manifest(DL, MAR_2026, vec![package(1, vec![usd("VN", "0.00")])]));
    let warnings: Vec<_> = p
        .package
        .warnings
        .iter()
        .map(|w| (w.code.as_str(), w.field.to_string()))
        .collect();
    assert_eq!(
        warnings,
        vec![("ZERO_DECLARED_VALUE", "$.packages[0].items".to_string())]
    );
    assert_eq!(duty(&p).total_usd, Decimal::ZERO);
}

// ---------------------------------------------------------------------------------------------
// postal_entry_2026: HTS table, 10-digit HTS required, $2,500 limit
// ---------------------------------------------------------------------------------------------

fn hts_item(hts: &str, value: &str) -> Value {
    let mut it = usd("CN", value);
    it["hts"] = json!(hts);
    it
}

#[test]
fn postal_entry_rates_by_longest_hts_prefix() {
    // Each 100.00 USD; duty = 100 × rate of the longest listed prefix.
    for (hts, rate, duty_usd) in [
        ("6109100012", "0.165", "16.50"), // exact 10-digit row
        ("6110202079", "0.165", "16.50"), // exact 10-digit row (6110 is 0.16)
        ("6110209999", "0.16", "16.00"),  // 4-digit row 6110
        ("6199999999", "0.17", "17.00"),  // chapter row 61
        ("4202221500", "0.063", "6.30"),  // exact 10-digit row
        ("4202921234", "0.176", "17.60"), // 6-digit row 420292 beats 4202 (0.08)
        ("4202990000", "0.08", "8.00"),   // 4-digit row 4202
        ("8507600000", "0.034", "3.40"),  // 6-digit row 850760
        ("8517990000", "0.02", "2.00"),   // chapter row 85 (851762 does not match)
        ("8471300100", "0.00", "0.00"),   // exact row, duty free
    ] {
        let p = assess(DL, AUG_2026, vec![hts_item(hts, "100.00")]);
        assert_eq!(regime_id(&p), "postal_entry_2026");
        let d = duty(&p);
        assert_eq!(
            (d.lines[0].rate, d.lines[0].duty_usd),
            (dec(rate), dec(duty_usd)),
            "{hts}"
        );
        assert_eq!(d.lines[0].hts, Some(hts));
        // No fee is configured for this regime (fees are regime data, default none).
        assert_eq!(d.fees_usd, Decimal::ZERO);
        assert_eq!(d.total_usd, dec(duty_usd));
    }
}

#[test]
fn postal_entry_requires_a_10_digit_hts() {
    let mut no_hts = usd("CN", "10.00");
    no_hts.as_object_mut().unwrap().remove("hts");
    let p = packages(&manifest(DL, AUG_2026, vec![package(1, vec![no_hts])]));
    assert_eq!(
        errors(&p[0]),
        vec![("MISSING_FIELD", "$.packages[0].items[0].hts".to_string())]
    );
    let p = packages(&manifest(
        DL,
        AUG_2026,
        vec![package(1, vec![hts_item("610910", "10.00")])],
    ));
    assert_eq!(
        errors(&p[0]),
        vec![("INVALID_HTS", "$.packages[0].items[0].hts".to_string())]
    );
    // Before postal_entry_2026 HTS is optional, and 6 digits are fine.
    let mut no_hts = usd("CN", "10.00");
    no_hts.as_object_mut().unwrap().remove("hts");
    accepted_one(&manifest(
        DL,
        MAR_2026,
        vec![package(1, vec![no_hts, hts_item("610910", "1.00")])],
    ));
}

#[test]
fn postal_entry_package_value_limit_is_2500_usd() {
    // 2500.00 is allowed: 2500.00 × 0.165 = 412.50.
    let p = assess(DL, AUG_2026, vec![usd("CN", "2500.00")]);
    assert_eq!(duty(&p).total_usd, dec("412.50"));
    // 1500.00 + 1000.01 = 2500.01 is above it.
    let p = packages(&manifest(
        DL,
        AUG_2026,
        vec![package(1, vec![usd("CN", "1500.00"), usd("CN", "1000.01")])],
    ));
    assert_eq!(
        errors(&p[0]),
        vec![("VALUE_ABOVE_POSTAL_LIMIT", "$.packages[0].items".to_string())]
    );
    // The limit is on the USD value (Q3 2026 EUR 1.15768):
    // 2150.00 EUR = 2489.012 -> 2489.01 USD: allowed, × 0.165 = 410.68665 -> 410.69.
    let p = assess(DL, AUG_2026, vec![item("FR", "2150.00", "EUR")]);
    assert_eq!(lines(&p), vec![line("FR", "2489.01", "0.165", "410.69")]);
    // 2160.00 EUR = 2500.5888 -> 2500.59 USD: above the limit.
    let p = packages(&manifest(
        DL,
        AUG_2026,
        vec![package(1, vec![item("FR", "2160.00", "EUR")])],
    ));
    assert_eq!(
        errors(&p[0]),
        vec![("VALUE_ABOVE_POSTAL_LIMIT", "$.packages[0].items".to_string())]
    );
    // The limit does not exist before postal_entry_2026: 3000.00 × 0.10 = 300.00.
    assert_eq!(ad_valorem(DL, MAR_2026, "CN", "3000.00").1, dec("300.00"));
}

#[test]
fn postal_entry_hts_without_a_rate_is_an_exception() {
    // With the shipped table every valid chapter has a row; a reduced table shows the rule.
    let ops = ops_with_edits(
        "no-hts-rate",
        &[(
            "rates/hts_postal_entry_2026.csv",
            "",
            "hts,rate,description\n61,0.17,Apparel knitted\n6109100012,0.165,T-shirts of cotton\n",
        )],
    );
    let m = manifest(
        DL,
        AUG_2026,
        vec![package(
            1,
            vec![hts_item("6109100012", "100.00"), hts_item("8471300100", "100.00")],
        )],
    );
    let p = &manifest_outcome(run_with(&ops, &m)).packages[0];
    assert_eq!(
        errors(p),
        vec![("NO_HTS_RATE", "$.packages[0].items[1].hts".to_string())]
    );
    // 6110000000 falls back to chapter 61: 100.00 × 0.17 = 17.00.
    let m = manifest(DL, AUG_2026, vec![package(1, vec![hts_item("6110000000", "100.00")])]);
    let p = &manifest_outcome(run_with(&ops, &m)).packages[0];
    assert!(p.accepted(), "{:?}", errors(p));
    assert_eq!(duty(p).total_usd, dec("17.00"));
}

#[test]
fn fees_are_regime_data() {
    // A config where postal_entry_2026 carries the FY2026 informal fee 2.69:
    // HTS 6109100012 100.00 × 0.165 = 16.50, + 2.69 = 19.19. An exempt gift pays no fee.
    let ops = ops_with_edits(
        "fees",
        &[(
            "rates/regimes.toml",
            "dutiable mail).\nfees_usd = \"0.00\"",
            "dutiable mail).\nfees_usd = \"2.69\"",
        )],
    );
    let m = manifest(
        DL,
        AUG_2026,
        vec![package(1, vec![usd("CN", "100.00")]), gift(2, vec![usd("CN", "50.00")])],
    );
    let out = manifest_outcome(run_with(&ops, &m));
    let d = out.packages[0].duty.as_ref().unwrap();
    assert_eq!((d.fees_usd, d.total_usd), (dec("2.69"), dec("19.19")));
    let d = out.packages[1].duty.as_ref().unwrap();
    assert_eq!((d.fees_usd, d.total_usd), (Decimal::ZERO, Decimal::ZERO));
    // The two 2025-2026 carrier regimes remit no fee.
    for arrival in [OCT_2025, MAR_2026] {
        let p = assess(DL, arrival, vec![usd("CN", "100.00")]);
        assert_eq!(duty(&p).fees_usd, Decimal::ZERO);
    }
}

// ---------------------------------------------------------------------------------------------
// Rate versions
// ---------------------------------------------------------------------------------------------

#[test]
fn rates_version_is_on_every_assessment() {
    let text = std::fs::read_to_string(config_dir().join("rates/regimes.toml")).unwrap();
    let doc: toml::Value = toml::from_str(&text).unwrap();
    let declared = doc["version"].as_str().unwrap();
    let version = &ops().rates.version;
    assert!(version.starts_with(&format!("{declared}+")), "{version}");
    // Ad valorem, specific and exempt assessments, in every regime, all carry it.
    for (carrier, arrival) in [(DL, OCT_2025), ("LH", OCT_2025), (DL, MAR_2026), (DL, AUG_2026)] {
        let m = manifest(
            carrier,
            arrival,
            vec![package(1, vec![usd("CN", "150.00")]), gift(2, vec![usd("CN", "10.00")])],
        );
        for line in encoded(&run(&m)) {
            assert_eq!(line["status"], "accepted", "{line}");
            assert_eq!(line["duty"]["rates_version"].as_str(), Some(version.as_str()), "{line}");
        }
    }
}

#[test]
fn a_changed_rate_file_changes_the_rates_version_and_the_duty() {
    // A retroactive change, GB 10 % -> 11 %: 100.00 × 0.11 = 11.00, under another version.
    let ops = ops_with_edits("gb-rate", &[("rates/ieepa_rates.csv", "GB,0.10,", "GB,0.11,")]);
    assert_ne!(ops.rates.version, support::ops().rates.version);
    let m = manifest(DL, OCT_2025, vec![package(1, vec![usd("GB", "100.00")])]);
    let p = &manifest_outcome(run_with(&ops, &m)).packages[0];
    assert_eq!(duty(p).total_usd, dec("11.00"));
    assert_eq!(ad_valorem(DL, OCT_2025, "GB", "100.00").1, dec("10.00"));
}

// ---------------------------------------------------------------------------------------------
// Payment calendar
// ---------------------------------------------------------------------------------------------

#[test]
fn duty_is_due_on_the_7th_business_day_of_the_next_month() {
    let cal = &ops().calendar;
    // The brief's example: September 2025 arrivals were due 9 October 2025
    // (Oct 1 W, 2 Th, 3 F, 6 M, 7 Tu, 8 W, 9 Th).
    assert_eq!(cal.due_date(Month { year: 2025, month: 9 }), date("2025-10-09"));
    // October 2025: Nov 3 M(1) 4(2) 5(3) 6(4) 7 F(5) 10 M(6), 11 Veterans Day, 12 W(7).
    assert_eq!(cal.due_date(Month { year: 2025, month: 10 }), date("2025-11-12"));
    // The month of a package is its Eastern arrival month.
    let out = manifest_outcome(run(&manifest(
        DL,
        "2025-10-01T03:00:00Z",
        vec![package(1, vec![usd("VN", "1.00")])],
    )));
    // 03:00Z on 1 Oct is 23:00 EDT on 30 Sep.
    assert_eq!(out.header.month, Some(Month { year: 2025, month: 9 }));
}

// ---------------------------------------------------------------------------------------------
// Risk (weights from config/risk/risk.toml)
// ---------------------------------------------------------------------------------------------

fn routed(departure: &str, shipper: &str, origin: &str, arrival: &str) -> PackageOutcome<'static> {
    let mut p = package(1, vec![usd(origin, "100.00")]);
    p["shipper"]["country"] = json!(shipper);
    let mut m = manifest(DL, arrival, vec![p]);
    m["trip"]["departure_country"] = json!(departure);
    accepted_one(&m)
}

#[test]
fn transshipment_origin_differs_from_departure() {
    // Chinese goods, Chinese shipper, conveyance from Vietnam: TRANSSHIPMENT 20.
    let p = routed("VN", "CN", "CN", MAR_2026);
    assert_eq!(reasons(&p), vec![(Reason::Transshipment, 20)]);
    // Under IEEPA the route saves 0.30 - 0.20 = 0.10 >= rate_gap 0.10: TARIFF_ARBITRAGE_ROUTE 20.
    let p = routed("VN", "CN", "CN", OCT_2025);
    assert_eq!(
        reasons(&p),
        sorted(vec![(Reason::Transshipment, 20), (Reason::TariffArbitrageRoute, 20)])
    );
    // Goods made where the conveyance left from: no finding.
    assert_eq!(reasons(&routed("VN", "CN", "VN", OCT_2025)), vec![]);
    // Shipper, departure and origin all one country: no finding.
    assert_eq!(reasons(&routed("CN", "CN", "CN", OCT_2025)), vec![]);
}

#[test]
fn vague_descriptions_are_flagged() {
    for (description, vague) in [
        ("goods", true),
        ("Gift 2", true),
        ("PARTS, samples", true),
        ("Gift box of chocolates", false),
        ("Men's cotton T-shirt", false),
    ] {
        let mut it = usd("VN", "50.00");
        it["description"] = json!(description);
        let p = assess(DL, MAR_2026, vec![it]);
        let expected = if vague {
            vec![(Reason::VagueDescription, 15)]
        } else {
            vec![]
        };
        assert_eq!(reasons(&p), expected, "{description}");
    }
}

fn to_consignee(serial: u32, name: &str, postal: &str) -> Value {
    let mut p = package(serial, vec![usd("VN", "50.00")]);
    p["consignee"]["name"] = json!(name);
    p["consignee"]["address"]["postal_code"] = json!(postal);
    p
}

#[test]
fn split_shipment_three_packages_to_one_consignee() {
    // Name and 5-digit ZIP normalised: these three are one consignee.
    let m = manifest(
        DL,
        MAR_2026,
        vec![
            to_consignee(1, "Jane Doe", "12207"),
            to_consignee(2, "JANE  DOE", "12207-1234"),
            to_consignee(3, "jane doe", "12207"),
            to_consignee(4, "John Roe", "73301"),
        ],
    );
    let p = packages(&m);
    for p in &p[..3] {
        assert_eq!(reasons(p), vec![(Reason::SplitShipment, 20)]);
    }
    assert_eq!(reasons(&p[3]), vec![]);
    // Two packages to one consignee are not a split shipment (min_packages 3).
    let m = manifest(
        DL,
        MAR_2026,
        vec![
            to_consignee(1, "Jane Doe", "12207"),
            to_consignee(2, "Jane Doe", "12207"),
            to_consignee(3, "John Roe", "73301"),
        ],
    );
    assert!(packages(&m).iter().all(|p| reasons(p).is_empty()));
}

#[test]
fn undervaluation_against_the_hts_chapter_norm() {
    // 2.000 kg of chapter 61 (norm 60 USD/kg, risk/value_norms.csv), fraction 0.10:
    // threshold 60 × 0.10 × 2 = 12.00 USD. 11.99 is below it, 12.00 is not.
    let weighed = |value: &str, hts: Option<&str>| {
        let mut it = usd("VN", value);
        match hts {
            Some(h) => it["hts"] = json!(h),
            None => {
                it.as_object_mut().unwrap().remove("hts");
            }
        }
        let mut p = package(1, vec![it]);
        p["weight_kg"] = json!("2.000");
        reasons(&accepted_one(&manifest(DL, MAR_2026, vec![p])))
    };
    assert_eq!(weighed("11.99", Some("6109100012")), vec![(Reason::Undervaluation, 25)]);
    assert_eq!(weighed("12.00", Some("6109100012")), vec![]);
    // Without HTS the default norm 50 USD/kg applies: 50 × 0.10 × 2 = 10.00.
    assert_eq!(weighed("9.99", None), vec![(Reason::Undervaluation, 25)]);
    assert_eq!(weighed("10.00", None), vec![]);
}

fn from_shipper(serial: u32, name: &str, currency: &str) -> Value {
    let mut p = package(serial, vec![item("VN", "50.00", currency)]);
    p["shipper"]["name"] = json!(name);
    p
}

#[test]
fn first_time_shipper_then_known() {
    let mut history = AccountHistory::default();
    let m = manifest(DL, MAR_2026, vec![from_shipper(1, "Textil Versand GmbH", "USD")]);
    let out = manifest_outcome(run_with_history(&mut history, &m));
    assert_eq!(reasons(&out.packages[0]), vec![(Reason::FirstTimeShipper, 10)]);
    // The same account (name normalised, same country) in a later manifest is known.
    let m = manifest(DL, MAR_2026, vec![from_shipper(2, "TEXTIL  VERSAND GMBH", "USD")]);
    let out = manifest_outcome(run_with_history(&mut history, &m));
    assert_eq!(reasons(&out.packages[0]), vec![]);
    // Another shipper is new.
    let m = manifest(DL, MAR_2026, vec![from_shipper(3, "Kamera Haus", "USD")]);
    let out = manifest_outcome(run_with_history(&mut history, &m));
    assert_eq!(reasons(&out.packages[0]), vec![(Reason::FirstTimeShipper, 10)]);
}

/// Feeds `rejected` rejected packages of one shipper, then one good package of it.
fn after_rejections(rejected: u32) -> PackageOutcome<'static> {
    let mut history = AccountHistory::default();
    let bad: Vec<Value> = (0..rejected)
        .map(|i| from_shipper(100 + i, "Shady Exports", "XYZ"))
        .collect();
    let out = manifest_outcome(run_with_history(&mut history, &manifest(DL, MAR_2026, bad)));
    assert!(out.packages.iter().all(|p| !p.accepted()));
    let m = manifest(DL, MAR_2026, vec![from_shipper(1, "Shady Exports", "USD")]);
    manifest_outcome(run_with_history(&mut history, &m)).packages.remove(0)
}

#[test]
fn shipper_rejection_rate_after_several_rejected_packages() {
    // Decay 0.95: after n packages the decayed count is (1 - 0.95^n) / 0.05:
    // n = 5 -> 4.52 < min_packages 5 (no finding); n = 6 -> 5.30 >= 5 with rate 1.0 >= 0.20:
    // SHIPPER_REJECTION_RATE 25 (score 25: tier medium). The shipper is not new any more.
    let p = after_rejections(5);
    assert_eq!(reasons(&p), vec![]);
    let p = after_rejections(6);
    assert_eq!(reasons(&p), vec![(Reason::ShipperRejectionRate, 25)]);
    let risk = p.risk.as_ref().unwrap();
    assert_eq!(risk.score(), 25);
    assert_eq!(risk.tier(&ops().risk), Tier::Medium);
}

#[test]
fn carrier_rejection_rate_after_many_rejected_packages() {
    // Decay 0.999: (1 - 0.999^n) / 0.001 is 49.75 for n = 51 and 50.70 for n = 52 (min 50).
    let run_carrier = |rejected: u32| {
        let mut history = AccountHistory::default();
        let bad: Vec<Value> = (0..rejected)
            .map(|i| from_shipper(100 + i, &format!("Shipper {i}"), "XYZ"))
            .collect();
        manifest_outcome(run_with_history(&mut history, &manifest("XQ", MAR_2026, bad)));
        let m = manifest("XQ", MAR_2026, vec![from_shipper(1, "New Shipper", "USD")]);
        reasons(&manifest_outcome(run_with_history(&mut history, &m)).packages[0])
    };
    assert_eq!(run_carrier(51), vec![(Reason::FirstTimeShipper, 10)]);
    assert_eq!(
        run_carrier(52),
        sorted(vec![(Reason::FirstTimeShipper, 10), (Reason::CarrierRejectionRate, 10)])
    );
}

#[test]
fn risk_score_adds_points_and_caps_at_100() {
    // Three gifts of 150.00 USD described "gift", 30 kg each, CN goods from a CN shipper on a
    // conveyance from VN, all to one consignee, October 2025:
    //   TRANSSHIPMENT 20 + TARIFF_ARBITRAGE_ROUTE 20 (0.30 - 0.20 >= 0.10) + VAGUE 15
    //   + GIFT_ABOVE_EXEMPTION 20 + SPLIT_SHIPMENT 20
    //   + UNDERVALUATION 25 (150.00 < 60 × 0.10 × 30 = 180.00) + FIRST_TIME_SHIPPER 10 = 130
    // capped at 100: critical. Duty 150.00 × 0.30 = 45.00.
    let pkgs: Vec<Value> = (1..=3)
        .map(|i| {
            let mut it = usd("CN", "150.00");
            it["description"] = json!("gift");
            let mut p = gift(i, vec![it]);
            p["shipper"]["country"] = json!("CN");
            p["consignee"]["name"] = json!("Jane Doe");
            p["weight_kg"] = json!("30");
            p
        })
        .collect();
    let mut m = manifest(DL, OCT_2025, pkgs);
    m["trip"]["departure_country"] = json!("VN");
    let mut history = AccountHistory::default();
    let out = manifest_outcome(run_with_history(&mut history, &m));
    let p = &out.packages[0];
    assert_eq!(duty(p).total_usd, dec("45.00"));
    assert_eq!(
        reasons(p),
        sorted(vec![
            (Reason::Transshipment, 20),
            (Reason::TariffArbitrageRoute, 20),
            (Reason::VagueDescription, 15),
            (Reason::GiftAboveExemption, 20),
            (Reason::SplitShipment, 20),
            (Reason::Undervaluation, 25),
            (Reason::FirstTimeShipper, 10),
        ])
    );
    let risk = p.risk.as_ref().unwrap();
    assert_eq!(risk.score(), 100);
    assert_eq!(risk.tier(&ops().risk), Tier::Critical);
    let line = &encoded(&Outcome::Manifest(out.clone()))[0];
    assert_eq!(line["risk"]["score"], 100);
    assert_eq!(line["risk"]["tier"], "critical");
}

// ---------------------------------------------------------------------------------------------
// Field limits of contract §1 (inclusive bounds accepted, one beyond refused)
// ---------------------------------------------------------------------------------------------

#[test]
fn contract_length_limits() {
    let with_description = |d: &str| {
        let mut it = usd("VN", "10.00");
        it["description"] = json!(d);
        errors(&packages(&manifest(DL, MAR_2026, vec![package(1, vec![it])]))[0])
    };
    let desc = "$.packages[0].items[0].description".to_string();
    // 3 to 256 characters (characters, not bytes).
    assert_eq!(with_description("Tee"), vec![]);
    assert_eq!(with_description("T恤衫"), vec![]);
    assert_eq!(with_description(&"é".repeat(256)), vec![]);
    assert_eq!(
        with_description(&"é".repeat(257)),
        vec![("INVALID_DESCRIPTION", desc.clone())]
    );
    assert_eq!(with_description("ab"), vec![("INVALID_DESCRIPTION", desc)]);

    // manifest_id 1-64 of [A-Za-z0-9._-].
    let with_id = |id: &str| {
        let mut m = manifest(DL, MAR_2026, vec![package(1, vec![usd("VN", "10.00")])]);
        m["manifest_id"] = json!(id);
        errors(&packages(&m)[0])
    };
    assert_eq!(with_id(&format!("A.b_c-{}", "9".repeat(58))), vec![]);
    assert_eq!(
        with_id(&"A".repeat(65)),
        vec![("INVALID_MANIFEST_ID", "$.manifest_id".to_string())]
    );

    // trip.number 1-16 characters.
    let with_trip = |n: &str| {
        let mut m = manifest(DL, MAR_2026, vec![package(1, vec![usd("VN", "10.00")])]);
        m["trip"]["number"] = json!(n);
        errors(&packages(&m)[0])
    };
    assert_eq!(with_trip(&"7".repeat(16)), vec![]);
    assert_eq!(
        with_trip(&"7".repeat(17)),
        vec![("INVALID_TRIP_NUMBER", "$.trip.number".to_string())]
    );

    // 1-100 items: 100 items of 0.10 USD at 10 % = 100 × 0.01 = 1.00.
    let p = assess(DL, MAR_2026, vec![usd("VN", "0.10"); 100]);
    assert_eq!(duty(&p).lines.len(), 100);
    assert_eq!(duty(&p).total_usd, dec("1.00"));
    let p = packages(&manifest(DL, MAR_2026, vec![package(1, vec![usd("VN", "0.10"); 101])]));
    assert_eq!(
        errors(&p[0]),
        vec![("SCHEMA_VIOLATION", "$.packages[0].items".to_string())]
    );

    // Carrier codes: IATA 2 alphanumerics, ICAO 3 letters, SCAC 2-4 letters.
    let with_carrier = |code: &str, kind: &str| {
        let mut m = manifest(DL, MAR_2026, vec![package(1, vec![usd("VN", "10.00")])]);
        m["carrier"] = json!({"code": code, "code_type": kind});
        errors(&packages(&m)[0])
    };
    let bad = || vec![("INVALID_CARRIER_CODE", "$.carrier.code".to_string())];
    assert_eq!(with_carrier("5X", "iata"), vec![]);
    assert_eq!(with_carrier("DLH", "icao"), vec![]);
    assert_eq!(with_carrier("AB", "scac"), vec![]);
    assert_eq!(with_carrier("ABCD", "scac"), vec![]);
    assert_eq!(with_carrier("ABCDE", "scac"), bad());
    assert_eq!(with_carrier("DL1", "icao"), bad());
    assert_eq!(with_carrier("D", "iata"), bad());

    // Port: 4 digits, kept as a string (leading zero allowed).
    let with_port = |port: &str| {
        let mut m = manifest(DL, MAR_2026, vec![package(1, vec![usd("VN", "10.00")])]);
        m["trip"]["port_of_arrival"] = json!(port);
        errors(&packages(&m)[0])
    };
    assert_eq!(with_port("0712"), vec![]);
    assert_eq!(with_port("2720"), vec![]);
    assert_eq!(
        with_port("472"),
        vec![("INVALID_PORT", "$.trip.port_of_arrival".to_string())]
    );
}
