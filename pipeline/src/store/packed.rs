//! A manifest's contribution as the store keeps it: its accepted packages and their item lines
//! packed in one text column of its row.
//!
//! One row per manifest instead of a row per package and per item line is what makes a batch
//! commit cheap: the per-package B-tree insertions were ~94% of its cost. The text is read back
//! only when an amendment or a replay replaces the manifest, for the 12-month duplicate check,
//! and for page 2 of the worksheet.
//!
//! Two formats, told apart by the text's first byte:
//! - **headed** (written since store version 5, `migrations/0005_headed_contributions.sql`;
//!   starts with `=`): a header line
//!   `= TAB month TAB arrival_date TAB trip_number TAB port_of_arrival TAB regime TAB
//!   rates_version` holds for the package lines after it, up to the next header line; a package
//!   line is `tracking_number TAB method TAB value TAB duty TAB fees`, then one TAB-separated
//!   field per item line. A manifest's packages nearly always share one header, written once
//!   (the first format repeated its ~65 bytes on every line, ~40% of the text); a dead-letter
//!   replay that corrects the header for one package writes a header line of its own.
//! - **flat** (`migrations/0002_packed_contributions.sql`): every line
//!   `tracking_number TAB month TAB arrival_date TAB trip_number TAB port_of_arrival TAB regime
//!   TAB method TAB rates_version TAB value TAB duty TAB fees`, then the item lines. Read as
//!   before; converted to the headed format when a batch next changes the manifest
//!   ([`Packer::resume`]).
//!
//! An item line is `item,origin_country,hts,value,rate,duty` (amounts in integer cents, an
//! empty hts when none was declared). No field may hold a TAB, a comma or a newline, and a
//! tracking number may not start with `=`: the operators validate them, and the store refuses
//! a batch that would break the format.

use super::records::{AcceptedRecord, LineRecord};
use anyhow::{bail, Context, Result};
use smol_str::SmolStr;

/// The first field of a header line.
const HEADER_MARK: &str = "=";

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

/// Appends packages to one contribution in the headed format, writing a header line only
/// when a package's header differs from the one in force.
#[derive(Default)]
pub(crate) struct Packer {
    /// The fields of the header line in force at the end of the text; `None` before any.
    header: Option<[SmolStr; 6]>,
}

impl Packer {
    /// A packer for a stored contribution: one in the flat format is first rewritten in the
    /// headed one (every package kept, in order); packages then go after the text.
    pub(crate) fn resume(contribution: &mut String) -> Result<Packer> {
        let mut packer = Packer::default();
        if contribution.is_empty() {
            return Ok(packer);
        }
        if !is_header(contribution) {
            let mut headed = String::with_capacity(contribution.len());
            for p in packages(contribution) {
                let p = p?;
                let header = [
                    p.month,
                    p.arrival_date,
                    p.trip_number,
                    p.port_of_arrival,
                    p.regime,
                    p.rates_version,
                ];
                let amounts = [p.value_cents, p.duty_cents, p.fees_cents];
                packer.push_line(
                    &mut headed,
                    header,
                    p.tracking_number,
                    p.method,
                    amounts,
                    p.item_lines as usize,
                    |out| {
                        if !p.lines.is_empty() {
                            out.push('\t');
                            out.push_str(p.lines);
                        }
                    },
                )?;
            }
            *contribution = headed;
            return Ok(packer);
        }
        if let Some(last) = contribution.split_terminator('\n').rev().find(|l| is_header(l)) {
            let mut reader = Reader::default();
            reader.read(last)?;
            packer.header = reader.header.map(|h| h.map(SmolStr::new));
        }
        Ok(packer)
    }

    /// Appends one accepted package. Runs once per accepted package on the commit thread, so it
    /// writes bytes directly (no formatting machinery), and checks that no field holds a
    /// separator by counting the separators of what it wrote (a field can only add to them), not
    /// field by field: that check was 6% of the store's CPU.
    pub(crate) fn push(
        &mut self,
        out: &mut String,
        tracking_number: &str,
        at: &Arrival<'_>,
        a: &AcceptedRecord,
    ) -> Result<()> {
        let header = [
            at.month,
            at.arrival_date,
            at.trip_number,
            at.port_of_arrival,
            &a.regime,
            &a.rates_version,
        ];
        let amounts = [a.value_cents, a.duty_cents, a.fees_cents];
        self.push_line(out, header, tracking_number, a.method, amounts, a.lines.len(), |out| {
            for l in &a.lines {
                out.push('\t');
                push_int(out, i64::from(l.item));
                out.push(',');
                out.push_str(&l.origin_country);
                out.push(',');
                out.push_str(l.hts.as_deref().unwrap_or_default());
                out.push(',');
                push_int(out, l.value_cents);
                out.push(',');
                out.push_str(&l.rate);
                out.push(',');
                push_int(out, l.duty_cents);
            }
        })
        .or_else(|e| {
            // Name the field at fault, if it is one of the item lines'.
            for l in &a.lines {
                plain(&l.origin_country)?;
                plain(&l.rate)?;
                plain(l.hts.as_deref().unwrap_or_default())?;
            }
            Err(e)
        })
    }

    /// Appends a package line (and its header line first, when the header changes); `lines`
    /// appends its item lines, each after a TAB. Nothing stays of a line refused.
    #[allow(clippy::too_many_arguments)]
    fn push_line(
        &mut self,
        out: &mut String,
        header: [&str; 6],
        tracking_number: &str,
        method: &str,
        amounts: [i64; 3],
        item_lines: usize,
        lines: impl FnOnce(&mut String),
    ) -> Result<()> {
        let new_header = self
            .header
            .as_ref()
            .is_none_or(|current| current.iter().zip(header).any(|(c, h)| c != h));
        let start = out.len();
        if new_header {
            out.push_str(HEADER_MARK);
            for field in header {
                out.push('\t');
                out.push_str(field);
            }
            out.push('\n');
        }
        out.push_str(tracking_number);
        out.push('\t');
        out.push_str(method);
        for amount in amounts {
            out.push('\t');
            push_int(out, amount);
        }
        lines(out);
        out.push('\n');
        // Tabs, commas and newlines of the header line and the package line.
        let header_line = usize::from(new_header);
        let expected = (6 + 1) * header_line + (4 + item_lines) + 5 * item_lines + 1;
        let found = separators(&out.as_bytes()[start..]);
        if found != expected || tracking_number.starts_with(HEADER_MARK) {
            out.truncate(start);
            for field in header.into_iter().chain([tracking_number, method]) {
                plain(field)?;
            }
            if tracking_number.starts_with(HEADER_MARK) {
                bail!("the store cannot keep the tracking number {tracking_number:?}: it starts with {HEADER_MARK:?}");
            }
            bail!("the store cannot keep a package whose line came out with {found} separators, not {expected}");
        }
        if new_header {
            self.header = Some(header.map(SmolStr::new));
        }
        Ok(())
    }
}

/// Whether a line is a header line (and a contribution that starts with one is headed).
fn is_header(line: &str) -> bool {
    line.strip_prefix(HEADER_MARK)
        .is_some_and(|rest| rest.starts_with('\t'))
}

/// How many bytes of `bytes` are separators of the format (TAB, comma, newline), found with
/// `memchr3` (vectorized), where a check per field or a count per byte took ~10 instructions
/// per byte.
fn separators(bytes: &[u8]) -> usize {
    memchr::memchr3_iter(b'\t', b',', b'\n', bytes).count()
}

/// Appends `v` in decimal.
fn push_int(out: &mut String, v: i64) {
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
}

/// A field must not hold a separator of the format.
fn plain(field: &str) -> Result<()> {
    if field.bytes().any(|b| matches!(b, b'\t' | b'\n' | b',')) {
        bail!("the store cannot keep {field:?}: it holds a tab, a comma or a newline");
    }
    Ok(())
}

/// Reads a contribution line by line, in either format.
#[derive(Default)]
pub(crate) struct Reader<'a> {
    /// The header line in force: month, arrival date, trip, port, regime, rates version.
    header: Option<[&'a str; 6]>,
}

impl<'a> Reader<'a> {
    /// The package of a line of the contribution, read in order; `None` for a header line.
    pub(crate) fn read(&mut self, line: &'a str) -> Result<Option<PackedPackage<'a>>> {
        let corrupt = || format!("a stored contribution line is corrupt: {line:?}");
        if is_header(line) {
            let mut fields = line.split('\t').skip(1);
            let mut header = [""; 6];
            for h in &mut header {
                *h = fields.next().with_context(corrupt)?;
            }
            if fields.next().is_some() {
                bail!(corrupt());
            }
            self.header = Some(header);
            return Ok(None);
        }
        let Some(header) = self.header else {
            return parse_flat(line).map(Some);
        };
        let mut fields = line.splitn(3, '\t');
        let mut next = || fields.next().with_context(corrupt);
        let (tracking_number, method, amounts) = (next()?, next()?, next()?);
        package(line, header, tracking_number, method, amounts).map(Some)
    }
}

/// The packages of a contribution, in the order they were added.
pub(crate) fn packages(contribution: &str) -> impl Iterator<Item = Result<PackedPackage<'_>>> {
    let mut reader = Reader::default();
    // Lines end at a newline only (`str::lines` would also take a CR off a field's end).
    contribution
        .split_terminator('\n')
        .filter_map(move |line| reader.read(line).transpose())
}

fn count_item_lines(lines: &str) -> i64 {
    if lines.is_empty() {
        0
    } else {
        lines.split('\t').count() as i64
    }
}

/// A line of the flat format.
fn parse_flat(line: &str) -> Result<PackedPackage<'_>> {
    let corrupt = || format!("a stored contribution line is corrupt: {line:?}");
    let mut fields = line.splitn(9, '\t');
    let mut next = || fields.next().with_context(corrupt);
    let (tracking_number, month, arrival_date, trip_number, port_of_arrival) =
        (next()?, next()?, next()?, next()?, next()?);
    let (regime, method, rates_version, amounts) = (next()?, next()?, next()?, next()?);
    let header = [month, arrival_date, trip_number, port_of_arrival, regime, rates_version];
    package(line, header, tracking_number, method, amounts)
}

/// A package of `line`, either format: its header's fields, tracking number and method, and
/// `amounts`, the rest of its line (`value TAB duty TAB fees`, then its item lines, if any).
fn package<'a>(
    line: &str,
    header: [&'a str; 6],
    tracking_number: &'a str,
    method: &'a str,
    amounts: &'a str,
) -> Result<PackedPackage<'a>> {
    let corrupt = || format!("a stored contribution line is corrupt: {line:?}");
    let mut fields = amounts.splitn(4, '\t');
    let mut next = || fields.next().with_context(corrupt);
    let value_cents = next()?.parse().with_context(corrupt)?;
    let duty_cents = next()?.parse().with_context(corrupt)?;
    let fees_cents = next()?.parse().with_context(corrupt)?;
    // A package without item lines has no field after its fees.
    let lines = fields.next().unwrap_or_default();
    let [month, arrival_date, trip_number, port_of_arrival, regime, rates_version] = header;
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
        item_lines: count_item_lines(lines),
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
                origin_country: origin.into(),
                hts: (!hts.is_empty()).then(|| hts.into()),
                value_cents: value.parse().with_context(corrupt)?,
                rate: rate.into(),
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

    /// Appends a package to a stored contribution, as a later batch does.
    fn push_package(out: &mut String, tracking: &str, at: &Arrival<'_>, a: &AcceptedRecord) -> Result<()> {
        Packer::resume(out)?.push(out, tracking, at, a)
    }

    /// A package's line in the flat format, written by hand.
    fn flat_line(tracking: &str, at: &Arrival<'_>, a: &AcceptedRecord) -> String {
        let mut line = format!(
            "{tracking}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            at.month,
            at.arrival_date,
            at.trip_number,
            at.port_of_arrival,
            a.regime,
            a.method,
            a.rates_version,
            a.value_cents,
            a.duty_cents,
            a.fees_cents
        );
        for l in &a.lines {
            let hts = l.hts.as_deref().unwrap_or_default();
            line += &format!(
                "\t{},{},{hts},{},{},{}",
                l.item, l.origin_country, l.value_cents, l.rate, l.duty_cents
            );
        }
        line + "\n"
    }

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
            push_int(&mut out, v);
            assert_eq!(out, format!("x{v}"));
        }
    }

    #[test]
    fn a_field_with_a_separator_is_refused() {
        let mut a = accepted(vec![line(0, "CN", None, 100, "0.10", 10)]);
        a.rates_version = "v1,v2".into();
        let err = push_package(&mut String::new(), "RR473124829DE", &AT, &a).unwrap_err();
        assert!(err.to_string().contains("comma"), "{err}");
        assert!(push_package(&mut String::new(), "RR47\t3124829DE", &AT, &accepted(vec![])).is_err());
        let err = push_package(&mut String::new(), "=RR473124829DE", &AT, &accepted(vec![])).unwrap_err();
        assert!(err.to_string().contains("starts with"), "{err}");
        // A refused package leaves no partial line.
        let good = accepted(vec![line(0, "CN", None, 100, "0.10", 10)]);
        let mut out = String::new();
        push_package(&mut out, "RR473124829DE", &AT, &good).unwrap();
        let before = out.clone();
        let bad_line = accepted(vec![line(0, "C\nN", None, 100, "0.10", 10)]);
        assert!(push_package(&mut out, "RR000000000DE", &AT, &bad_line).is_err());
        assert_eq!(out, before);
    }

    #[test]
    fn a_manifest_s_header_is_written_once_and_again_when_it_changes() {
        let a = accepted(vec![line(0, "CN", Some("6109100012"), 4700, "0.10", 470)]);
        let mut text = String::new();
        let mut packer = Packer::default();
        for n in 0..3 {
            packer.push(&mut text, &format!("RR00000000{n}DE"), &AT, &a).unwrap();
        }
        // A replayed package with a corrected trip, then the manifest's header again.
        let corrected = Arrival {
            trip_number: "LH401",
            ..AT
        };
        packer.push(&mut text, "RR000000003DE", &corrected, &a).unwrap();
        packer.push(&mut text, "RR000000004DE", &AT, &a).unwrap();
        let headers: Vec<&str> = text.lines().filter(|l| l.starts_with('=')).collect();
        assert_eq!(
            headers,
            [
                "=\t2026-03\t2026-03-02\tLH400\t4701\tsection122_postal_2026\t2026-03-01",
                "=\t2026-03\t2026-03-02\tLH401\t4701\tsection122_postal_2026\t2026-03-01",
                "=\t2026-03\t2026-03-02\tLH400\t4701\tsection122_postal_2026\t2026-03-01",
            ]
        );
        let got: Vec<PackedPackage<'_>> = packages(&text).collect::<Result<_>>().unwrap();
        let trips: Vec<(&str, &str)> = got.iter().map(|p| (p.tracking_number, p.trip_number)).collect();
        assert_eq!(
            trips,
            [
                ("RR000000000DE", "LH400"),
                ("RR000000001DE", "LH400"),
                ("RR000000002DE", "LH400"),
                ("RR000000003DE", "LH401"),
                ("RR000000004DE", "LH400"),
            ]
        );
        // Read back as the flat format would have said it, in fewer bytes.
        let flat: String = got
            .iter()
            .map(|p| {
                let at = Arrival {
                    month: p.month,
                    arrival_date: p.arrival_date,
                    trip_number: p.trip_number,
                    port_of_arrival: p.port_of_arrival,
                };
                flat_line(p.tracking_number, &at, &a)
            })
            .collect();
        assert_eq!(packages(&flat).collect::<Result<Vec<_>>>().unwrap(), got);
        assert!(text.len() < flat.len(), "{} against {}", text.len(), flat.len());
        // A packer resumed on the text goes on under its last header.
        let mut resumed = text.clone();
        push_package(&mut resumed, "RR000000005DE", &AT, &a).unwrap();
        assert_eq!(resumed.lines().filter(|l| l.starts_with('=')).count(), 3);
        assert_eq!(packages(&resumed).count(), 6);
    }

    #[test]
    fn a_flat_contribution_reads_as_before_and_is_rewritten_headed_on_the_next_change() {
        let a = accepted(vec![
            line(0, "CN", Some("6109100012"), 4700, "0.10", 470),
            line(1, "GB", None, -5, "0.155", 0),
        ]);
        let b = accepted(vec![]);
        let other = Arrival {
            trip_number: "LH401",
            ..AT
        };
        let flat = flat_line("RR473124829DE", &AT, &a) + &flat_line("RR000000000DE", &other, &b);
        let read: Vec<PackedPackage<'_>> = packages(&flat).collect::<Result<_>>().unwrap();
        assert_eq!((read.len(), read[0].item_lines, read[1].item_lines), (2, 2, 0));
        assert_eq!((read[0].trip_number, read[1].trip_number), ("LH400", "LH401"));
        let mut text = flat.clone();
        let mut packer = Packer::resume(&mut text).unwrap();
        assert!(text.starts_with("=\t"), "{text}");
        assert_eq!(packages(&text).collect::<Result<Vec<_>>>().unwrap(), read);
        let lines_before: Vec<String> = read.iter().map(|p| format!("{:?}", lines(p).unwrap())).collect();
        packer.push(&mut text, "RR000000001DE", &other, &b).unwrap();
        let after: Vec<PackedPackage<'_>> = packages(&text).collect::<Result<_>>().unwrap();
        assert_eq!(&after[..2], &read[..]);
        assert_eq!(
            (after[2].tracking_number, after[2].trip_number),
            ("RR000000001DE", "LH401")
        );
        let lines_after: Vec<String> = after[..2].iter().map(|p| format!("{:?}", lines(p).unwrap())).collect();
        assert_eq!(lines_after, lines_before);
        // The header in force was the converted text's last: no header line for the new package.
        assert_eq!(text.lines().filter(|l| l.starts_with('=')).count(), 2);
    }

    #[test]
    fn a_separator_in_any_field_is_refused_and_leaves_nothing() {
        let base = accepted(vec![
            line(0, "CN", Some("6109100012"), 4700, "0.10", 470),
            line(1, "GB", None, 100, "0.155", 16),
        ]);
        for sep in ['\t', ',', '\n'] {
            let bad = |s: &str| -> SmolStr { format!("{}{sep}{}", &s[..1], &s[1..]).into() };
            let mut cases: Vec<(String, Arrival<'static>, AcceptedRecord)> = Vec::new();
            let tracking = "RR473124829DE".to_string();
            cases.push((bad(&tracking).to_string(), AT, base.clone()));
            let mut a = base.clone();
            a.regime = bad(&a.regime);
            cases.push((tracking.clone(), AT, a));
            let mut a = base.clone();
            a.rates_version = bad(&a.rates_version);
            cases.push((tracking.clone(), AT, a));
            for l in 0..2 {
                let mut a = base.clone();
                a.lines[l].origin_country = bad(&a.lines[l].origin_country);
                cases.push((tracking.clone(), AT, a));
                let mut a = base.clone();
                a.lines[l].rate = bad(&a.lines[l].rate);
                cases.push((tracking.clone(), AT, a));
                let mut a = base.clone();
                a.lines[l].hts = Some(bad("6109100012"));
                cases.push((tracking.clone(), AT, a));
            }
            let leaked = |s: SmolStr| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
            for field in 0..4 {
                let mut at = AT;
                match field {
                    0 => at.month = leaked(bad(at.month)),
                    1 => at.arrival_date = leaked(bad(at.arrival_date)),
                    2 => at.trip_number = leaked(bad(at.trip_number)),
                    _ => at.port_of_arrival = leaked(bad(at.port_of_arrival)),
                }
                cases.push((tracking.clone(), at, base.clone()));
            }
            for (tracking, at, a) in &cases {
                let mut out = String::new();
                push_package(&mut out, "RR000000000DE", &AT, &base).unwrap();
                let kept = out.clone();
                let err = push_package(&mut out, tracking, at, a).unwrap_err();
                assert!(err.to_string().contains("cannot keep"), "{err}");
                assert_eq!(out, kept);
            }
        }
        // And the clean package still goes in whole.
        let mut out = String::new();
        push_package(&mut out, "RR473124829DE", &AT, &base).unwrap();
        assert_eq!(packages(&out).count(), 1);
    }

    #[test]
    fn a_carriage_return_at_a_field_s_end_comes_back() {
        let mut a = accepted(vec![line(0, "CN", None, 100, "0.10", 10)]);
        a.rates_version = "v1\r".into();
        let mut text = String::new();
        push_package(&mut text, "RR473124829DE", &AT, &a).unwrap();
        push_package(&mut text, "RR000000000DE\r", &AT, &a).unwrap();
        let got: Vec<PackedPackage<'_>> = packages(&text).collect::<Result<_>>().unwrap();
        assert_eq!(got[0].rates_version, "v1\r");
        assert_eq!(got[1].tracking_number, "RR000000000DE\r");
        // And the packer resumed on the text sees its header in force, CR included.
        let mut resumed = text.clone();
        push_package(&mut resumed, "RR000000001DE", &AT, &a).unwrap();
        assert_eq!(
            resumed.len() - text.len(),
            "RR000000001DE\tad_valorem\t100\t10\t0\t0,CN,,100,0.10,10\n".len()
        );
    }

    #[test]
    fn a_corrupt_line_is_an_error_not_a_panic() {
        for bad in [
            "RR473124829DE\tx",
            "T\tM\tA\tT\tP\tr\tm\tv\t1\t2\tthree\t0,CN,,1,0.1,0",
            "T\tM\tA\tT\tP\tr\tm\tv\t1\t2\t3\t0,CN",
            "T\tM\tA\tT\tP\tr\tm\tv\t1\t2\t3\tx,CN,,1,0.1,0",
            // The headed format: a short or long header, a short package line, bad amounts.
            "=\t2026-03\t2026-03-02\tLH400\t4701\tr\nT\tm\t1\t2\t3",
            "=\t2026-03\t2026-03-02\tLH400\t4701\tr\tv\tx\nT\tm\t1\t2\t3",
            "=\t2026-03\t2026-03-02\tLH400\t4701\tr\tv\nT\tm\t1\t2",
            "=\t2026-03\t2026-03-02\tLH400\t4701\tr\tv\nT\tm\t1\ttwo\t3",
            "=\t2026-03\t2026-03-02\tLH400\t4701\tr\tv\nT\tm\t1\t2\t3\t0,CN",
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
