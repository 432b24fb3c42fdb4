//! Encoding `assessment/v1` (contract §2): one JSON object per package, written by hand into
//! a reusable buffer (no intermediate tree, no float formatting).

use crate::error::Issue;
use crate::money::{write_money, write_rate};
use crate::outcome::{ManifestOutcome, PackageOutcome};
use crate::Operators;
use chrono::{Datelike, NaiveDate};

/// Appends `s` as a JSON string literal.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if any_needs_escape(bytes) {
        write_escaped(out, bytes);
        return;
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

/// [`write_str`] of a text with bytes to escape.
#[cold]
#[inline(never)]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{:04x}", b).as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[inline(always)]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte needs escaping, eight bytes at a time: a word has a byte below 0x20, or
/// equal to `"` or `\\`, exactly when these classic bit tests are non-zero (exact as yes/no
/// answers for thresholds up to 0x80).
#[inline]
fn any_needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let word_needs_escape = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        below(x, 0x20) | below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1) != 0
    };
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| needs_escape(b));
    }
    let mut chunks = bytes.chunks_exact(8);
    if chunks.any(word_needs_escape) {
        return true;
    }
    // The last eight bytes, overlapping the last whole word: the rest is checked with them.
    word_needs_escape(&bytes[bytes.len() - 8..])
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

#[inline]
fn write_u32(out: &mut Vec<u8>, v: u32) {
    if v < 10 {
        out.push(b'0' + v as u8);
        return;
    }
    if v < 100 {
        out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
        return;
    }
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Four-digit year (ISO 8601 sign and padding outside 0000–9999).
fn write_year(out: &mut Vec<u8>, year: i32) {
    if (1000..=9999).contains(&year) {
        write_u32(out, year as u32);
    } else {
        out.extend_from_slice(format!("{year:04}").as_bytes());
    }
}

fn write_2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// `YYYY-MM-DD`.
pub fn write_date(out: &mut Vec<u8>, d: NaiveDate) {
    write_year(out, d.year());
    out.push(b'-');
    write_2(out, d.month());
    out.push(b'-');
    write_2(out, d.day());
}

#[inline]
fn write_issues(out: &mut Vec<u8>, issues: &[Issue]) {
    if issues.is_empty() {
        out.extend_from_slice(b"[]");
        return;
    }
    out.push(b'[');
    for (i, issue) in issues.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"code\":\"");
        out.extend_from_slice(issue.code.as_str().as_bytes());
        out.extend_from_slice(b"\",\"field\":");
        write_str(out, &issue.field);
        out.extend_from_slice(b",\"message\":");
        write_str(out, &issue.message);
        out.push(b'}');
    }
    out.push(b']');
}

/// The assessment of one package.
pub fn assessment(out: &mut Vec<u8>, ops: &Operators, m: &ManifestOutcome<'_>, p: &PackageOutcome<'_>) {
    manifest_part(out, m);
    package_part(out, ops, p);
}

/// The start of every assessment of a manifest: the same bytes for each of its packages,
/// up to (not including) `,"tracking_number"`.
pub fn manifest_part(out: &mut Vec<u8>, m: &ManifestOutcome<'_>) {
    let h = &m.header;
    out.extend_from_slice(b"{\"schema\":\"assessment/v1\",\"manifest_id\":");
    write_opt_str(out, h.manifest_id);
    out.extend_from_slice(b",\"carrier\":");
    write_opt_str(out, h.carrier);
    out.extend_from_slice(b",\"trip_number\":");
    write_opt_str(out, h.trip_number);
    out.extend_from_slice(b",\"port_of_arrival\":");
    write_opt_str(out, h.port_of_arrival);
    out.extend_from_slice(b",\"arrival_date\":");
    match h.arrival_date {
        Some(d) => {
            out.push(b'"');
            write_date(out, d);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"month\":");
    match h.month {
        Some(mo) => {
            out.push(b'"');
            write_year(out, mo.year);
            out.push(b'-');
            write_2(out, mo.month);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// JSON text that is the same for every package of a manifest, escaped once: the regime's
/// id and the rates version of the duty object.
#[derive(Debug, Default)]
pub struct ManifestText {
    regime: Option<(usize, Vec<u8>)>,
    rates_version: Vec<u8>,
}

impl ManifestText {
    fn regime(&mut self, ops: &Operators, ri: usize) -> &[u8] {
        if self.regime.as_ref().is_none_or(|(r, _)| *r != ri) {
            let mut text = Vec::new();
            write_str(&mut text, &ops.rates.regimes[ri].id);
            self.regime = Some((ri, text));
        }
        self.regime.as_ref().map_or(&[], |(_, text)| text)
    }

    fn rates_version(&mut self, ops: &Operators) -> &[u8] {
        if self.rates_version.is_empty() {
            write_str(&mut self.rates_version, &ops.rates.version);
        }
        &self.rates_version
    }
}

/// The rest of the assessment of one package, after [`manifest_part`].
pub fn package_part(out: &mut Vec<u8>, ops: &Operators, p: &PackageOutcome<'_>) {
    package_part_with(out, ops, p, &mut ManifestText::default());
}

/// [`package_part`], with the text shared by the packages of one manifest.
pub fn package_part_with(out: &mut Vec<u8>, ops: &Operators, p: &PackageOutcome<'_>, text: &mut ManifestText) {
    out.extend_from_slice(b",\"tracking_number\":");
    write_opt_str(out, p.package.tracking_number);
    out.extend_from_slice(if p.accepted() {
        b",\"status\":\"accepted\",\"errors\":"
    } else {
        b",\"status\":\"rejected\",\"errors\":"
    });
    write_issues(out, &p.package.errors);
    out.extend_from_slice(b",\"warnings\":");
    write_issues(out, &p.package.warnings);
    out.extend_from_slice(b",\"risk\":");
    match &p.risk {
        Some(risk) => {
            out.extend_from_slice(b"{\"score\":");
            write_u32(out, u32::from(risk.score()));
            out.extend_from_slice(b",\"tier\":\"");
            out.extend_from_slice(risk.tier(&ops.risk).as_str().as_bytes());
            out.extend_from_slice(b"\",\"reasons\":[");
            for (i, (reason, points)) in risk.reasons.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"code\":\"");
                out.extend_from_slice(reason.as_str().as_bytes());
                out.extend_from_slice(b"\",\"points\":");
                write_u32(out, u32::from(*points));
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"duty\":");
    match &p.duty {
        Some(d) => {
            out.extend_from_slice(b"{\"regime\":");
            out.extend_from_slice(text.regime(ops, d.regime));
            out.extend_from_slice(b",\"method\":\"");
            out.extend_from_slice(d.method.as_str().as_bytes());
            out.push(b'"');
            if let Some(e) = d.exemption {
                out.extend_from_slice(b",\"exemption\":\"");
                out.extend_from_slice(e.as_str().as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(b",\"rates_version\":");
            out.extend_from_slice(text.rates_version(ops));
            out.extend_from_slice(b",\"lines\":[");
            for (i, l) in d.lines.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"item\":");
                write_u32(out, l.item);
                out.extend_from_slice(b",\"origin_country\":\"");
                out.extend_from_slice(&l.origin.0);
                out.push(b'"');
                if let Some(hts) = l.hts {
                    out.extend_from_slice(b",\"hts\":");
                    write_str(out, hts);
                }
                out.extend_from_slice(b",\"value_usd\":\"");
                write_money(out, l.value_usd);
                out.extend_from_slice(b"\",\"rate\":\"");
                write_rate(out, l.rate);
                out.extend_from_slice(b"\",\"duty_usd\":\"");
                write_money(out, l.duty_usd);
                out.extend_from_slice(b"\"}");
            }
            out.extend_from_slice(b"],\"value_usd\":\"");
            write_money(out, d.value_usd);
            out.extend_from_slice(b"\",\"fees_usd\":\"");
            write_money(out, d.fees_usd);
            out.extend_from_slice(b"\",\"total_usd\":\"");
            write_money(out, d.total_usd);
            out.extend_from_slice(b"\"}");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// The single rejection of a message that could not be read as a manifest.
pub fn message_failure(out: &mut Vec<u8>, issue: &Issue) {
    out.extend_from_slice(
        b"{\"schema\":\"assessment/v1\",\"manifest_id\":null,\"carrier\":null,\"trip_number\":null,\"port_of_arrival\":null,\"arrival_date\":null,\"month\":null,\"tracking_number\":null,\"status\":\"rejected\",\"errors\":",
    );
    write_issues(out, std::slice::from_ref(issue));
    out.extend_from_slice(b",\"warnings\":[],\"risk\":null,\"duty\":null}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_test_finds_exactly_the_bytes_to_escape() {
        for b in 0..=255u8 {
            for at in 0..17 {
                let mut s = vec![b'a'; 17];
                s[at] = b;
                assert_eq!(any_needs_escape(&s), needs_escape(b), "{b} at {at}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_needs_escape_is_any_byte_needing_it(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            proptest::prop_assert_eq!(any_needs_escape(&bytes), bytes.iter().any(|&b| needs_escape(b)));
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut v = Vec::new();
        write_str(&mut v, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(v).unwrap(), r#""a\"b\\c\nd\u0001é""#);
    }
}
