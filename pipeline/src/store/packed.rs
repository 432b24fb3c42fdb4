//! A manifest's contribution as the store keeps it: its accepted packages and their item lines
//! packed in one text column of its row (format in `migrations/0002_packed_contributions.sql`).
//!
//! One row per manifest instead of a row per package and per item line is what makes a batch
//! commit cheap: the per-package B-tree insertions were ~94% of its cost. The text is read back
//! only when an amendment or a replay replaces the manifest, and for page 2 of the worksheet.

use super::records::{AcceptedRecord, LineRecord};
use anyhow::{bail, Context, Result};

/// What one stored package adds to the totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackedPackage<'a> {
    pub tracking_number: &'a str,
    pub month: &'a str,
    pub arrival_date: &'a str,
    pub trip_number: &'a str,
    pub port_of_arrival: &'a str,
    pub regime: &'a str,
    pub method: &'a str,
    pub rates_version: &'a str,
    pub value_cents: i64,
    pub duty_cents: i64,
    pub fees_cents: i64,
    /// The item lines, still packed: see [`lines`].
    lines: &'a str,
    pub item_lines: i64,
}

/// Where and when a package arrived: its manifest's header, as the package was accepted under
/// it (a replayed package may come with a corrected header).
pub(crate) struct Arrival<'a> {
    pub month: &'a str,
    pub arrival_date: &'a str,
    pub trip_number: &'a str,
    pub port_of_arrival: &'a str,
}

/// Appends one accepted package to a contribution. Runs once per accepted package on the
/// commit thread, so it writes bytes directly (no formatting machinery).
pub(crate) fn push_package(
    out: &mut String,
    tracking_number: &str,
    at: &Arrival<'_>,
    a: &AcceptedRecord,
) -> Result<()> {
    let fields = [
        tracking_number,
        at.month,
        at.arrival_date,
        at.trip_number,
        at.port_of_arrival,
        &a.regime,
        a.method,
        &a.rates_version,
    ];
    for field in fields {
        plain(field)?;
    }
    for l in &a.lines {
        plain(&l.origin_country)?;
        plain(&l.rate)?;
        plain(l.hts.as_deref().unwrap_or_default())?;
    }
    for field in fields {
        out.push_str(field);
        out.push('\t');
    }
    push_int(out, a.value_cents, '\t');
    push_int(out, a.duty_cents, '\t');
    push_int(out, a.fees_cents, '\t');
    for l in &a.lines {
        push_int(out, i64::from(l.item), ',');
        out.push_str(&l.origin_country);
        out.push(',');
        out.push_str(l.hts.as_deref().unwrap_or_default());
        out.push(',');
        push_int(out, l.value_cents, ',');
        out.push_str(&l.rate);
        out.push(',');
        push_int(out, l.duty_cents, '\t');
    }
    // The last separator becomes the end of the line.
    out.pop();
    out.push('\n');
    Ok(())
}

/// Appends `v` in decimal, then `then` (an ASCII separator).
fn push_int(out: &mut String, v: i64, then: char) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
    out.push(then);
}

/// A field must not hold a separator of the format.
fn plain(field: &str) -> Result<()> {
    if field.bytes().any(|b| matches!(b, b'\t' | b'\n' | b',')) {
        bail!("the store cannot keep {field:?}: it holds a tab, a comma or a newline");
    }
    Ok(())
}

/// The packages of a contribution, one line each, in the order they were added.
pub(crate) fn packages(contribution: &str) -> impl Iterator<Item = Result<PackedPackage<'_>>> {
    contribution.lines().map(parse_package)
}

fn parse_package(line: &str) -> Result<PackedPackage<'_>> {
    let corrupt = || format!("a stored contribution line is corrupt: {line:?}");
    let mut fields = line.splitn(12, '\t');
    let mut next = || fields.next().with_context(corrupt);
    let (tracking_number, month, arrival_date, trip_number, port_of_arrival) =
        (next()?, next()?, next()?, next()?, next()?);
    let (regime, method, rates_version) = (next()?, next()?, next()?);
    let value_cents = next()?.parse().with_context(corrupt)?;
    let duty_cents = next()?.parse().with_context(corrupt)?;
    let fees_cents = next()?.parse().with_context(corrupt)?;
    // A package without item lines has no field after its fees.
    let lines = fields.next().unwrap_or_default();
    Ok(PackedPackage {
        tracking_number,
        month,
        arrival_date,
        trip_number,
        port_of_arrival,
        regime,
        method,
        rates_version,
        value_cents,
        duty_cents,
        fees_cents,
        lines,
        item_lines: if lines.is_empty() {
            0
        } else {
            lines.split('\t').count() as i64
        },
    })
}

/// The item lines of a stored package.
pub(crate) fn lines(p: &PackedPackage<'_>) -> Result<Vec<LineRecord>> {
    if p.lines.is_empty() {
        return Ok(Vec::new());
    }
    p.lines
        .split('\t')
        .map(|l| {
            let corrupt = || format!("a stored item line is corrupt: {l:?}");
            let f: Vec<&str> = l.split(',').collect();
            let [item, origin, hts, value, rate, duty] = f[..] else {
                bail!(corrupt());
            };
            Ok(LineRecord {
                item: item.parse().with_context(corrupt)?,
                origin_country: origin.to_string(),
                hts: (!hts.is_empty()).then(|| hts.to_string()),
                value_cents: value.parse().with_context(corrupt)?,
                rate: rate.to_string(),
                duty_cents: duty.parse().with_context(corrupt)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(item: u32, origin: &str, hts: Option<&str>, value: i64, rate: &str, duty: i64) -> LineRecord {
        LineRecord {
            item,
            origin_country: origin.into(),
            hts: hts.map(Into::into),
            value_cents: value,
            rate: rate.into(),
            duty_cents: duty,
        }
    }

    fn accepted(lines: Vec<LineRecord>) -> AcceptedRecord {
        AcceptedRecord {
            regime: "section122_postal_2026".into(),
            method: "ad_valorem",
            value_cents: lines.iter().map(|l| l.value_cents).sum(),
            duty_cents: lines.iter().map(|l| l.duty_cents).sum(),
            fees_cents: 0,
            rates_version: "2026-03-01".into(),
            lines,
        }
    }

    const AT: Arrival<'static> = Arrival {
        month: "2026-03",
        arrival_date: "2026-03-02",
        trip_number: "LH400",
        port_of_arrival: "4701",
    };

    #[test]
    fn packages_and_lines_come_back_as_they_went_in() {
        let a = accepted(vec![
            line(0, "CN", Some("6109100012"), 4700, "0.10", 470),
            line(1, "GB", None, -5, "0.155", 0),
        ]);
        let b = accepted(vec![line(0, "DE", None, 1999, "0.10", 200)]);
        let mut text = String::new();
        push_package(&mut text, "RR473124829DE", &AT, &a).unwrap();
        push_package(&mut text, "RR000000000DE", &AT, &b).unwrap();
        let got: Vec<PackedPackage<'_>> = packages(&text).collect::<Result<_>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].tracking_number,
                got[0].regime,
                got[0].method,
                got[0].rates_version
            ),
            ("RR473124829DE", "section122_postal_2026", "ad_valorem", "2026-03-01")
        );
        assert_eq!(
            (
                got[0].month,
                got[0].arrival_date,
                got[0].trip_number,
                got[0].port_of_arrival
            ),
            ("2026-03", "2026-03-02", "LH400", "4701")
        );
        assert_eq!(
            (
                got[0].value_cents,
                got[0].duty_cents,
                got[0].fees_cents,
                got[0].item_lines
            ),
            (4695, 470, 0, 2)
        );
        let lines0 = lines(&got[0]).unwrap();
        assert_eq!(format!("{lines0:?}"), format!("{:?}", a.lines));
        assert_eq!(format!("{:?}", lines(&got[1]).unwrap()), format!("{:?}", b.lines));
    }

    #[test]
    fn integers_are_written_as_rust_writes_them() {
        let edges = [
            0,
            1,
            -1,
            9,
            10,
            -10,
            99,
            100,
            1_000_000_007,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        let spread = (0..64).flat_map(|k| [1i64 << k, (1i64 << k).wrapping_sub(1), 1i64.wrapping_sub(1i64 << k)]);
        for v in edges.into_iter().chain(spread) {
            let mut out = String::from("x");
            push_int(&mut out, v, ',');
            assert_eq!(out, format!("x{v},"));
        }
    }

    #[test]
    fn a_field_with_a_separator_is_refused() {
        let mut a = accepted(vec![line(0, "CN", None, 100, "0.10", 10)]);
        a.rates_version = "v1,v2".into();
        let err = push_package(&mut String::new(), "RR473124829DE", &AT, &a).unwrap_err();
        assert!(err.to_string().contains("comma"), "{err}");
        assert!(push_package(&mut String::new(), "RR47\t3124829DE", &AT, &accepted(vec![])).is_err());
        // Checked before anything is written: a refused package leaves no partial line.
        let mut out = String::from("kept\n");
        let bad_line = accepted(vec![line(0, "C\nN", None, 100, "0.10", 10)]);
        assert!(push_package(&mut out, "RR473124829DE", &AT, &bad_line).is_err());
        assert_eq!(out, "kept\n");
    }

    #[test]
    fn a_corrupt_line_is_an_error_not_a_panic() {
        for bad in [
            "RR473124829DE\tx",
            "T\tM\tA\tT\tP\tr\tm\tv\t1\t2\tthree\t0,CN,,1,0.1,0",
            "T\tM\tA\tT\tP\tr\tm\tv\t1\t2\t3\t0,CN",
            "T\tM\tA\tT\tP\tr\tm\tv\t1\t2\t3\tx,CN,,1,0.1,0",
        ] {
            let read = packages(bad)
                .collect::<Result<Vec<_>>>()
                .and_then(|ps| ps.iter().try_for_each(|p| lines(p).map(drop)));
            assert!(read.is_err(), "{bad:?}");
        }
        let empty = accepted(vec![]);
        let mut text = String::new();
        push_package(&mut text, "RR473124829DE", &AT, &empty).unwrap();
        let p = packages(&text).next().unwrap().unwrap();
        assert_eq!((p.item_lines, lines(&p).unwrap().len()), (0, 0));
    }
}
