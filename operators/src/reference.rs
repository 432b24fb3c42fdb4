//! Reference codes and formats: ISO countries and currencies, UPU S10 tracking numbers,
//! carrier codes, ports and HTS numbers. The code lists themselves are data under
//! `config/reference/`.

use crate::table::{DataError, DataFile};
use std::path::Path;

/// An ISO 3166-1 alpha-2 country, already checked against the reference list. (`Default`,
/// two zero bytes, is no country: it only fills unused slots.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Country(pub [u8; 2]);

impl Country {
    pub fn as_str(&self) -> &str {
        // Every country the reference hands out is two capital letters: its text is sliced
        // from the table of all such pairs, without a UTF-8 check.
        match idx2(&self.0) {
            Some(i) => &CAPITAL_PAIRS[2 * i..2 * i + 2],
            None => std::str::from_utf8(&self.0).unwrap_or("??"),
        }
    }
    pub const US: Country = Country(*b"US");
}

/// An ISO 4217 currency with its number of minor units.
/// (`Default`, zero bytes, is no currency: it only fills unused slots.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Currency {
    pub code: [u8; 3],
    pub minor_units: u8,
}

impl Currency {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("???")
    }
    pub fn is_usd(&self) -> bool {
        &self.code == b"USD"
    }
}

/// `AAABAC…ZZ`: every pair of capital letters, in the order of [`idx2`].
const CAPITAL_PAIRS: &str = {
    const BYTES: [u8; 2 * 26 * 26] = {
        let mut t = [0u8; 2 * 26 * 26];
        let mut i = 0;
        while i < 26 * 26 {
            t[2 * i] = b'A' + (i / 26) as u8;
            t[2 * i + 1] = b'A' + (i % 26) as u8;
            i += 1;
        }
        t
    };
    match std::str::from_utf8(&BYTES) {
        Ok(s) => s,
        Err(_) => panic!("capital letters are ASCII"),
    }
};

#[inline]
fn idx2(b: &[u8]) -> Option<usize> {
    if b.len() == 2 && b.iter().all(u8::is_ascii_uppercase) {
        Some((b[0] - b'A') as usize * 26 + (b[1] - b'A') as usize)
    } else {
        None
    }
}

fn idx3(b: &[u8]) -> Option<usize> {
    if b.len() == 3 && b.iter().all(u8::is_ascii_uppercase) {
        Some(((b[0] - b'A') as usize * 26 + (b[1] - b'A') as usize) * 26 + (b[2] - b'A') as usize)
    } else {
        None
    }
}

const NO_ALIAS: u16 = u16::MAX;
const NOT_A_CURRENCY: u8 = u8::MAX;

/// Country and currency lists, as dense lookup tables (no hashing on the hot path).
pub struct Reference {
    /// For each two-letter code: itself if assigned, the target of an alias, or `NO_ALIAS`.
    countries: Box<[u16; 26 * 26]>,
    /// Minor units per three-letter code, or `NOT_A_CURRENCY`.
    currencies: Box<[u8; 26 * 26 * 26]>,
}

impl Reference {
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let mut countries = Box::new([NO_ALIAS; 26 * 26]);
        let file = DataFile::read(&dir.join("reference/countries.csv"))?;
        for row in file.csv(&["code", "name"])? {
            let i = idx2(row.fields[0].as_bytes())
                .ok_or_else(|| file.err(row.line, format!("`{}` is not two capital letters", row.fields[0])))?;
            if countries[i] != NO_ALIAS {
                return Err(file.err(row.line, format!("country `{}` listed twice", row.fields[0])));
            }
            countries[i] = i as u16;
        }
        let file = DataFile::read(&dir.join("reference/country_aliases.csv"))?;
        for row in file.csv(&["alias", "code"])? {
            let (a, c) = (row.fields[0], row.fields[1]);
            let ai = idx2(a.as_bytes())
                .ok_or_else(|| file.err(row.line, format!("alias `{a}` is not two capital letters")))?;
            let ci = idx2(c.as_bytes())
                .filter(|&ci| countries[ci] == ci as u16)
                .ok_or_else(|| file.err(row.line, format!("alias target `{c}` is not a listed country")))?;
            if countries[ai] == ai as u16 {
                return Err(file.err(row.line, format!("`{a}` is an assigned country and cannot be an alias")));
            }
            countries[ai] = ci as u16;
        }
        let mut currencies = Box::new([NOT_A_CURRENCY; 26 * 26 * 26]);
        let file = DataFile::read(&dir.join("reference/currencies.csv"))?;
        for row in file.csv(&["code", "minor_units", "name"])? {
            let i = idx3(row.fields[0].as_bytes())
                .ok_or_else(|| file.err(row.line, format!("`{}` is not three capital letters", row.fields[0])))?;
            let minor: u8 = row.fields[1]
                .parse()
                .ok()
                .filter(|&m| m <= 4)
                .ok_or_else(|| file.err(row.line, format!("minor_units `{}` must be 0 to 4", row.fields[1])))?;
            if currencies[i] != NOT_A_CURRENCY {
                return Err(file.err(row.line, format!("currency `{}` listed twice", row.fields[0])));
            }
            currencies[i] = minor;
        }
        Ok(Reference { countries, currencies })
    }

    /// Resolves a country code, reading aliases (`UK` → `GB`).
    #[inline]
    pub fn country(&self, code: &str) -> Option<Country> {
        let i = idx2(code.as_bytes())?;
        let target = self.countries[i];
        if target == NO_ALIAS {
            return None;
        }
        let t = target as usize;
        Some(Country([b'A' + (t / 26) as u8, b'A' + (t % 26) as u8]))
    }

    /// A code that is itself assigned (aliases excluded), as S10 requires.
    pub fn is_assigned_country(&self, code: &str) -> bool {
        idx2(code.as_bytes()).is_some_and(|i| self.countries[i] == i as u16)
    }

    #[inline]
    pub fn currency(&self, code: &str) -> Option<Currency> {
        let i = idx3(code.as_bytes())?;
        let minor = self.currencies[i];
        (minor != NOT_A_CURRENCY).then(|| Currency {
            code: code.as_bytes().try_into().unwrap_or(*b"???"),
            minor_units: minor,
        })
    }
}

/// Why a tracking number is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S10Error {
    Format(String),
    CheckDigit { expected: u8, found: u8 },
}

/// The UPU S10 check digit of an 8-digit serial: weights 8,6,4,2,3,5,9,7;
/// C = 11 − (sum mod 11), with 10 → 0 and 11 → 5.
pub fn s10_check_digit(serial: &[u8; 8]) -> u8 {
    const WEIGHTS: [u32; 8] = [8, 6, 4, 2, 3, 5, 9, 7];
    let sum: u32 = serial.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    match 11 - sum % 11 {
        10 => 0,
        11 => 5,
        c => c as u8,
    }
}

/// Checks a UPU S10 tracking number: 2 letters (not starting J or K), 8 digits, the check
/// digit, and the ISO country of the issuing post.
pub fn check_s10(s: &str, reference: &Reference) -> Result<(), S10Error> {
    let b = s.as_bytes();
    if b.len() != 13 {
        return Err(S10Error::Format(format!(
            "\"{}\" has {} characters; a UPU S10 number has 13 (2 letters, 9 digits, 2 letters), e.g. RR473124829DE",
            clip(s),
            s.chars().count()
        )));
    }
    if !b[..2].iter().all(u8::is_ascii_uppercase) {
        return Err(S10Error::Format(format!(
            "\"{s}\" must start with two capital letters (the service indicator)"
        )));
    }
    if b[0] == b'J' || b[0] == b'K' {
        return Err(S10Error::Format(format!(
            "\"{s}\" uses service indicator {}; indicators starting J or K are reserved",
            &s[..2]
        )));
    }
    if !b[2..11].iter().all(u8::is_ascii_digit) {
        return Err(S10Error::Format(format!(
            "\"{s}\" must have 9 digits after the service indicator (serial and check digit)"
        )));
    }
    if !reference.is_assigned_country(&s[11..]) {
        return Err(S10Error::Format(format!(
            "\"{s}\" ends in \"{}\", which is not an ISO country code",
            &s[11..]
        )));
    }
    let serial: &[u8; 8] = b[2..10].try_into().map_err(|_| S10Error::Format(String::new()))?;
    let expected = s10_check_digit(serial);
    let found = b[10] - b'0';
    if expected != found {
        return Err(S10Error::CheckDigit { expected, found });
    }
    Ok(())
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(32) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Carrier code types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeType {
    Iata,
    Icao,
    Scac,
}

impl CodeType {
    pub fn parse(s: &str) -> Option<CodeType> {
        match s {
            "iata" => Some(CodeType::Iata),
            "icao" => Some(CodeType::Icao),
            "scac" => Some(CodeType::Scac),
            _ => None,
        }
    }

    /// Checks a carrier code against its type; returns what it should look like when wrong.
    pub fn check(self, code: &str) -> Result<(), &'static str> {
        let b = code.as_bytes();
        let ok = match self {
            CodeType::Iata => b.len() == 2 && b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
            CodeType::Icao => b.len() == 3 && b.iter().all(u8::is_ascii_uppercase),
            CodeType::Scac => (2..=4).contains(&b.len()) && b.iter().all(u8::is_ascii_uppercase),
        };
        if ok {
            Ok(())
        } else {
            Err(match self {
                CodeType::Iata => "an IATA code is 2 capital letters or digits, e.g. LH",
                CodeType::Icao => "an ICAO code is 3 capital letters, e.g. DLH",
                CodeType::Scac => "a SCAC is 2 to 4 capital letters, e.g. ABCD",
            })
        }
    }
}

/// A port of arrival: 4 digits, district + port.
pub fn is_port(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks an HTS number: digits only, of one of the `lengths`, chapter 01–97 except 77.
pub fn check_hts(s: &str, lengths: &[usize]) -> Result<(), String> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{}\" must contain digits only (no dots or spaces)", clip(s)));
    }
    if !lengths.contains(&s.len()) {
        let want = lengths.iter().map(usize::to_string).collect::<Vec<_>>().join(" or ");
        return Err(format!("\"{}\" has {} digits; expected {want}", clip(s), s.len()));
    }
    // Digits only (checked above): the first two are the chapter.
    let chapter = match s.as_bytes() {
        [a, b, ..] => u32::from(a - b'0') * 10 + u32::from(b - b'0'),
        _ => 0,
    };
    if chapter == 0 || chapter == 77 || chapter > 97 {
        return Err(format!(
            "\"{s}\" is in chapter {:02}; goods are classified in chapters 01 to 97 (77 is reserved)",
            chapter
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn country_text_is_its_bytes() {
        for a in 0..=255u8 {
            for b in [b'A', b'Z', b'a', b'0', 0x80, a] {
                let c = Country([a, b]);
                let want = std::str::from_utf8(&c.0).unwrap_or("??");
                assert_eq!(c.as_str(), want, "{a} {b}");
                let c = Country([b, a]);
                assert_eq!(c.as_str(), std::str::from_utf8(&c.0).unwrap_or("??"));
            }
        }
    }

    pub fn reference() -> Reference {
        Reference::load(&crate::config_dir_for_tests()).unwrap()
    }

    #[test]
    fn s10_example_from_the_brief() {
        assert_eq!(s10_check_digit(b"47312482"), 9);
        let r = reference();
        assert_eq!(check_s10("RR473124829DE", &r), Ok(()));
        assert_eq!(
            check_s10("RR473124828DE", &r),
            Err(S10Error::CheckDigit { expected: 9, found: 8 })
        );
    }

    #[test]
    fn s10_remainders_ten_and_eleven() {
        // sum mod 11 == 1 → 10 → 0; sum mod 11 == 0 → 11 → 5.
        assert_eq!(s10_check_digit(b"00060000"), 0); // 6×2 = 12, 12 mod 11 = 1, 11 − 1 = 10 → 0
        assert_eq!(s10_check_digit(b"00000000"), 5); // 0 mod 11 = 0, 11 − 0 = 11 → 5
        assert_eq!(s10_check_digit(b"20000002"), 3); // 16 + 14 = 30, 30 mod 11 = 8 → 3
    }

    #[test]
    fn s10_formats_refused() {
        let r = reference();
        for bad in [
            "RR47312482DE",
            "rr473124829DE",
            "JJ473124829DE",
            "KA473124829DE",
            "RR47312482XDE",
            "RR473124829XX",
            "RR473124829de",
            "",
        ] {
            assert!(matches!(check_s10(bad, &r), Err(S10Error::Format(_))), "{bad}");
        }
    }

    #[test]
    fn uk_is_read_as_gb_and_codes_are_checked() {
        let r = reference();
        assert_eq!(r.country("UK"), Some(Country(*b"GB")));
        assert_eq!(r.country("GB"), Some(Country(*b"GB")));
        assert_eq!(r.country("XX"), None);
        assert_eq!(r.country("de"), None);
        assert!(!r.is_assigned_country("UK"));
        assert_eq!(r.currency("JPY").map(|c| c.minor_units), Some(0));
        assert_eq!(r.currency("KWD").map(|c| c.minor_units), Some(3));
        assert_eq!(r.currency("USD").map(|c| c.minor_units), Some(2));
        assert_eq!(r.currency("XYZ"), None);
    }

    #[test]
    fn carrier_codes_by_type() {
        assert!(CodeType::Iata.check("LH").is_ok());
        assert!(CodeType::Iata.check("5X").is_ok());
        assert!(CodeType::Iata.check("LHX").is_err());
        assert!(CodeType::Icao.check("DLH").is_ok());
        assert!(CodeType::Icao.check("DL1").is_err());
        assert!(CodeType::Scac.check("ABCD").is_ok());
        assert!(CodeType::Scac.check("ABCDE").is_err());
        assert!(CodeType::Scac.check("A").is_err());
    }

    #[test]
    fn hts_rules() {
        assert!(check_hts("6109100012", &[10]).is_ok());
        assert!(check_hts("610910", &[6, 10]).is_ok());
        assert!(check_hts("61091000", &[6, 10]).is_err());
        assert!(check_hts("6109.10.0012", &[10]).is_err());
        assert!(check_hts("9903010000", &[10]).is_err());
        assert!(check_hts("7700000000", &[10]).is_err());
        assert!(check_hts("0000000000", &[10]).is_err());
    }

    proptest! {
        #[test]
        fn s10_any_serial_with_its_digit_is_valid_and_any_other_digit_is_not(serial in 0u32..100_000_000, other in 0u8..10) {
            let r = reference();
            let s = format!("{serial:08}");
            let digit = s10_check_digit(s.as_bytes().try_into().unwrap());
            prop_assert!(digit <= 9);
            let good = format!("RR{s}{digit}US");
            prop_assert_eq!(check_s10(&good, &r), Ok(()));
            if other != digit {
                let bad = format!("RR{s}{other}US");
                prop_assert_eq!(check_s10(&bad, &r), Err(S10Error::CheckDigit { expected: digit, found: other }));
            }
        }

        #[test]
        fn s10_digit_matches_the_definition(serial in 0u32..100_000_000) {
            let s = format!("{serial:08}");
            let w = [8u32, 6, 4, 2, 3, 5, 9, 7];
            let sum: u32 = s.bytes().zip(w).map(|(d, w)| u32::from(d - b'0') * w).sum();
            let c = 11 - sum % 11;
            let expected = if c == 10 { 0 } else if c == 11 { 5 } else { c as u8 };
            prop_assert_eq!(s10_check_digit(s.as_bytes().try_into().unwrap()), expected);
        }

        #[test]
        fn s10_never_panics(s in ".{0,20}") {
            let _ = check_s10(&s, &reference());
        }
    }
}
