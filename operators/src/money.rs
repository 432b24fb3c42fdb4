//! Exact decimal amounts: parsing as written, half-up rounding to the cent, fixed-scale output.
//!
//! Amounts never pass through a binary float. JSON numbers are read from their source text
//! (see `decode`), strings are read as written, and both go through [`parse_decimal`].

use rust_decimal::{Decimal, RoundingStrategy};

/// Largest number of integer digits accepted in an amount (values below 10^15).
pub const MAX_INTEGER_DIGITS: usize = 15;

/// Why a decimal text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountError {
    Empty,
    /// Not a plain decimal number (letters, `NaN`, `Infinity`, two points, ...).
    NotANumber,
    Negative,
    /// More significant fractional digits than allowed (`max` places).
    TooManyDecimals {
        max: u32,
    },
    /// More than [`MAX_INTEGER_DIGITS`] integer digits, or an exponent out of range.
    TooLarge,
}

impl AmountError {
    /// A sentence fragment for a carrier: "must be ..." / "has ...".
    pub fn describe(&self, text: &str) -> String {
        match self {
            AmountError::Empty => "is empty; expected a decimal number such as \"85.00\"".into(),
            AmountError::NotANumber => format!("\"{}\" is not a decimal number; write it like \"85.00\"", clip(text)),
            AmountError::Negative => format!("\"{}\" is negative; amounts must be zero or more", clip(text)),
            AmountError::TooManyDecimals { max } => {
                format!("\"{}\" has more than {max} decimal places", clip(text))
            }
            AmountError::TooLarge => format!(
                "\"{}\" is too large (at most {MAX_INTEGER_DIGITS} integer digits)",
                clip(text)
            ),
        }
    }
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(40) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Parses a non-negative decimal exactly as written.
///
/// Accepts `123`, `123.45`, `0.5`, and (when `allow_exponent`, i.e. for JSON numbers) `1.5e2`.
/// Digits after the decimal point beyond `max_scale` are accepted only when they are zeros
/// (`85.000` is 85, `19.999` is refused for a currency with 2 minor units).
#[inline]
pub fn parse_decimal(text: &str, max_scale: u32, allow_exponent: bool) -> Result<Decimal, AmountError> {
    match parse_plain(text.as_bytes(), max_scale) {
        Some(d) => Ok(d),
        None => parse_decimal_general(text, max_scale, allow_exponent),
    }
}

/// The common shape of an amount, `123` or `123.45` (no sign, no exponent, at most 19
/// characters, so the digits fit in a `u64`), when it is valid: the same `Decimal` as
/// [`parse_decimal_general`] gives (trailing fractional zeros dropped). `None` for anything
/// else, errors included, which the general parser handles and words.
#[inline]
fn parse_plain(b: &[u8], max_scale: u32) -> Option<Decimal> {
    if b.len() > 19 {
        return None;
    }
    let mut m: u64 = 0;
    let mut i = 0;
    while let Some(&d) = b.get(i).filter(|d| d.is_ascii_digit()) {
        m = m * 10 + u64::from(d - b'0');
        i += 1;
    }
    if i == 0 {
        return None;
    }
    let mut scale = 0u32;
    if i < b.len() {
        if b[i] != b'.' {
            return None;
        }
        i += 1;
        let f = i;
        while let Some(&d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            m = m * 10 + u64::from(d - b'0');
            i += 1;
        }
        if i == f || i != b.len() {
            return None;
        }
        scale = (i - f) as u32;
    }
    if m == 0 {
        return Some(Decimal::ZERO);
    }
    while scale > 0 && m.is_multiple_of(10) {
        m /= 10;
        scale -= 1;
    }
    let digits = m.ilog10() + 1;
    if scale > max_scale || digits as i64 - i64::from(scale) > MAX_INTEGER_DIGITS as i64 {
        return None;
    }
    Some(Decimal::from_parts(m as u32, (m >> 32) as u32, 0, false, scale))
}

/// [`parse_decimal`] for any text.
#[inline(never)]
fn parse_decimal_general(text: &str, max_scale: u32, allow_exponent: bool) -> Result<Decimal, AmountError> {
    let b = text.as_bytes();
    if b.is_empty() {
        return Err(AmountError::Empty);
    }
    let mut i = 0;
    let negative = b[0] == b'-';
    if negative || b[0] == b'+' {
        i = 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &b[int_start..i];
    let mut frac_digits: &[u8] = &[];
    if i < b.len() && b[i] == b'.' {
        let f = i + 1;
        i = f;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &b[f..i];
        if frac_digits.is_empty() {
            return Err(AmountError::NotANumber);
        }
    }
    if int_digits.is_empty() {
        return Err(AmountError::NotANumber);
    }
    let mut exponent: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') && allow_exponent {
        i += 1;
        let mut exp_neg = false;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            exp_neg = b[i] == b'-';
            i += 1;
        }
        let e_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if exponent < 10_000 {
                exponent = exponent * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if e_start == i {
            return Err(AmountError::NotANumber);
        }
        if exp_neg {
            exponent = -exponent;
        }
    }
    if i != b.len() {
        return Err(AmountError::NotANumber);
    }
    // All digits, as one digit string, with the decimal point `point` places from the right.
    let int_digits = trim_leading_zeros(int_digits);
    let mut scale: i64 = frac_digits.len() as i64 - exponent;
    // On the stack unless the text is unusually long.
    let total = int_digits.len() + frac_digits.len();
    let mut stack = [0u8; 40];
    let mut heap = Vec::new();
    let digits: &mut [u8] = if total <= stack.len() {
        &mut stack[..total]
    } else {
        heap.resize(total, 0);
        &mut heap
    };
    digits[..int_digits.len()].copy_from_slice(int_digits);
    digits[int_digits.len()..].copy_from_slice(frac_digits);
    let mut len = total;
    // Drop trailing zeros of the fractional part: they do not change the value.
    while scale > 0 && len > 0 && digits[len - 1] == b'0' {
        len -= 1;
        scale -= 1;
    }
    let significant = trim_leading_zeros(&digits[..len]);
    let all_zero = significant.iter().all(|&d| d == b'0');
    if negative && !all_zero {
        return Err(AmountError::Negative);
    }
    if all_zero {
        return Ok(Decimal::ZERO);
    }
    if scale > i64::from(max_scale) {
        return Err(AmountError::TooManyDecimals { max: max_scale });
    }
    let integer_digits = significant.len() as i64 - scale;
    if integer_digits > MAX_INTEGER_DIGITS as i64 {
        return Err(AmountError::TooLarge);
    }
    // Value = significant × 10^(-scale); scale may be negative after an exponent.
    let mut mantissa: i128 = 0;
    for &d in significant {
        mantissa = mantissa * 10 + i128::from(d - b'0');
    }
    while scale < 0 {
        mantissa *= 10;
        scale += 1;
    }
    Decimal::try_from_i128_with_scale(mantissa, scale as u32).map_err(|_| AmountError::TooLarge)
}

fn trim_leading_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

/// Rounds to the cent, half-up (away from zero; amounts here are never negative).
/// `0.125` → `0.13`, where banker's rounding would give `0.12`.
#[inline]
pub fn round_cents(d: Decimal) -> Decimal {
    if d.scale() == 2 {
        // Already in cents: rounding to 2 places and rescaling to 2 change nothing.
        return d;
    }
    if d.scale() < 2 {
        // Nothing to round; rescaling multiplies the mantissa (kept when it fits 64 bits).
        if let Ok(m) = u64::try_from(d.mantissa().unsigned_abs()) {
            let cents = u128::from(m) * POW10[(2 - d.scale()) as usize];
            return Decimal::from_parts(
                cents as u32,
                (cents >> 32) as u32,
                (cents >> 64) as u32,
                d.is_sign_negative(),
                2,
            );
        }
    }
    let mut r = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(2);
    r
}

/// `round_cents(a * b)`, computed with integers when that is provably exact: both factors
/// non-negative with mantissas below 2^64, so the product is exact in `u128`, and a product
/// rust_decimal would hold exactly too (below 2^96, scale at most 28). The result is then the
/// same `Decimal`, bit for bit (mantissa in cents, scale 2, positive); otherwise the plain
/// `Decimal` computation runs.
#[inline]
pub fn mul_round_cents(a: Decimal, b: Decimal) -> Decimal {
    if !a.is_sign_negative() && !b.is_sign_negative() {
        if let (Ok(ma), Ok(mb)) = (u64::try_from(a.mantissa()), u64::try_from(b.mantissa())) {
            let scale = a.scale() + b.scale();
            let p = u128::from(ma) * u128::from(mb);
            if p < 1 << 96 && scale <= 28 {
                if let Some(cents) = round_cents_int(p, scale) {
                    return cents_decimal(cents);
                }
            }
        }
    }
    round_cents(a * b)
}

/// `p × 10^-scale` rounded half-up to cents, as a count of cents (`None` if it needs more
/// than 96 bits).
#[inline]
fn round_cents_int(p: u128, scale: u32) -> Option<u128> {
    let cents = if scale <= 2 {
        p * POW10[(2 - scale) as usize]
    } else if let (Ok(p), Some(&d)) = (u64::try_from(p), POW10.get(scale as usize - 2)) {
        // The common case: one 64-bit division.
        let d = d as u64;
        let (q, r) = (p / d, p % d);
        u128::from(q + u64::from(r >= d - r))
    } else {
        let d = POW10[scale as usize - 2];
        let (q, r) = (p / d, p % d);
        q + u128::from(r >= d - r)
    };
    (cents < 1 << 96).then_some(cents)
}

/// A positive amount of `cents` (below 2^96) as a `Decimal` of scale 2.
#[inline]
fn cents_decimal(cents: u128) -> Decimal {
    Decimal::from_parts(cents as u32, (cents >> 32) as u32, (cents >> 64) as u32, false, 2)
}

/// `a < x * y`, with `x * y` as rust_decimal computes it. Compared with integers when that is
/// provably the same: all three non-negative with mantissas below 2^64, and a product
/// rust_decimal holds exactly (below 2^96, scale at most 28); both sides are then brought to
/// one scale in `u128` (or the `Decimal` path runs if that would overflow).
#[inline]
pub fn less_than_product(a: Decimal, x: Decimal, y: Decimal) -> bool {
    if !a.is_sign_negative() && !x.is_sign_negative() && !y.is_sign_negative() {
        if let (Ok(ma), Ok(mx), Ok(my)) = (
            u64::try_from(a.mantissa()),
            u64::try_from(x.mantissa()),
            u64::try_from(y.mantissa()),
        ) {
            let scale = x.scale() + y.scale();
            let p = u128::from(mx) * u128::from(my);
            if p < 1 << 96 && scale <= 28 {
                // a / 10^sa < p / 10^sp  ⟺  a × 10^sp < p × 10^sa.
                let left = u128::from(ma).checked_mul(POW10[scale as usize]);
                let right = p.checked_mul(POW10[a.scale() as usize]);
                if let (Some(left), Some(right)) = (left, right) {
                    return left < right;
                }
            }
        }
    }
    a < x * y
}

/// `round_cents(a + b)`, added as integers when both are non-negative amounts of scale 2
/// below 2^63 cents (the sum is then exact at scale 2, as rust_decimal's is); otherwise the
/// plain `Decimal` computation.
#[inline]
pub fn add_round_cents(a: Decimal, b: Decimal) -> Decimal {
    if a.scale() == 2 && b.scale() == 2 && !a.is_sign_negative() && !b.is_sign_negative() {
        if let (Ok(x), Ok(y)) = (u64::try_from(a.mantissa()), u64::try_from(b.mantissa())) {
            if x < 1 << 63 && y < 1 << 63 {
                return cents_decimal(u128::from(x + y));
            }
        }
    }
    round_cents(a + b)
}

/// `a.cmp(&b)` for `Decimal`s: by integers when both are non-negative with mantissas below
/// 2^64 and scales up to 19 (brought to one scale, both sides fit in `u128`), else by
/// rust_decimal.
#[inline]
pub fn cmp_amounts(a: Decimal, b: Decimal) -> std::cmp::Ordering {
    if !a.is_sign_negative() && !b.is_sign_negative() && a.scale() <= 19 && b.scale() <= 19 {
        if let (Ok(ma), Ok(mb)) = (u64::try_from(a.mantissa()), u64::try_from(b.mantissa())) {
            let scale = a.scale().max(b.scale());
            let left = u128::from(ma) * POW10[(scale - a.scale()) as usize];
            let right = u128::from(mb) * POW10[(scale - b.scale()) as usize];
            return left.cmp(&right);
        }
    }
    a.cmp(&b)
}

/// `10^i` for every scale a `Decimal` can have.
const POW10: [u128; 29] = {
    let mut t = [1u128; 29];
    let mut i = 1;
    while i < 29 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// The sum of amounts, as `Iterator::sum` of `Decimal` gives it, added with integers when
/// every amount is a non-negative `Decimal` of scale 2 below 2^63 (cents): the sum then has
/// scale 2 (rust_decimal's sum starts from `Decimal::ZERO` and takes the first amount's
/// scale), or is `Decimal::ZERO` itself when there is no amount.
#[inline]
pub fn sum_money(amounts: impl Iterator<Item = Decimal> + Clone) -> Decimal {
    let mut cents: u64 = 0;
    let mut any = false;
    for d in amounts.clone() {
        match u64::try_from(d.mantissa()) {
            Ok(m) if d.scale() == 2 && !d.is_sign_negative() && m < 1 << 63 && cents < 1 << 63 => cents += m,
            _ => return amounts.sum(),
        }
        any = true;
    }
    if any {
        cents_decimal(u128::from(cents))
    } else {
        Decimal::ZERO
    }
}

/// Appends `d` with exactly two decimal places.
#[inline(always)]
pub fn write_money(out: &mut Vec<u8>, d: Decimal) {
    if d.scale() == 2 && !d.is_sign_negative() {
        if let Ok(cents) = u64::try_from(d.mantissa()) {
            write_cents(out, cents);
            return;
        }
    }
    write_money_rescaled(out, d);
}

/// [`write_money`] of an amount that is not a non-negative count of cents.
#[inline(never)]
fn write_money_rescaled(out: &mut Vec<u8>, mut d: Decimal) {
    if d.scale() != 2 {
        d.rescale(2);
    }
    write_decimal(out, d);
}

/// Appends an amount of `cents` as `units.cc` (what [`write_decimal`] writes for a
/// non-negative `Decimal` of scale 2).
#[inline(always)]
fn write_cents(out: &mut Vec<u8>, cents: u64) {
    if cents < 10_000_000 {
        write_short_cents(out, cents);
        return;
    }
    let mut buf = [0u8; 24];
    let mut i = buf.len() - 2;
    let r = (cents % 100) as usize;
    buf[i..].copy_from_slice(&PAIRS[2 * r..2 * r + 2]);
    i -= 1;
    buf[i] = b'.';
    let units = cents / 100;
    if units == 0 {
        i -= 1;
        buf[i] = b'0';
    } else {
        write_digits_u64(&mut buf, &mut i, units);
    }
    out.extend_from_slice(&buf[i..]);
}

/// [`write_cents`] of an amount below 100,000.00 (at most eight characters, as nearly every
/// amount and rate is): the characters are gathered in one word, last first, and appended as
/// one 8-byte store, then the length is cut back. Appending a slice of variable length
/// instead called `memcpy` for a few bytes just stored one by one (a stall), ~4% of the
/// operator core.
#[inline(always)]
fn write_short_cents(out: &mut Vec<u8>, cents: u64) {
    debug_assert!(cents < 10_000_000);
    let digit = |d: u64| u64::from(b'0') + d;
    // Shifting each character in from the right leaves the first one in the lowest byte:
    // the word's little-endian bytes are the text.
    let mut word = digit(cents % 10);
    word = word << 8 | digit(cents / 10 % 10);
    word = word << 8 | u64::from(b'.');
    let mut len = 3;
    let mut units = cents / 100;
    loop {
        word = word << 8 | digit(units % 10);
        len += 1;
        units /= 10;
        if units == 0 {
            break;
        }
    }
    let start = out.len();
    out.extend_from_slice(&word.to_le_bytes());
    out.truncate(start + len);
}

/// Appends a rate with at least two decimal places (`0.10`, `0.165`): what [`write_decimal`]
/// writes for `d` rescaled to 2 places when its scale is below 2. A non-negative rate of at
/// most 2 places whose mantissa in hundredths fits a `u64` is written as cents, without
/// rescaling the `Decimal`.
#[inline]
pub fn write_rate(out: &mut Vec<u8>, d: Decimal) {
    if d.scale() <= 2 && !d.is_sign_negative() {
        if let Ok(m) = u64::try_from(d.mantissa()) {
            if let Some(hundredths) = m.checked_mul(POW10[(2 - d.scale()) as usize] as u64) {
                write_cents(out, hundredths);
                return;
            }
        }
    }
    write_rate_rescaled(out, d);
}

/// [`write_rate`] through `Decimal` rescaling.
#[inline(never)]
fn write_rate_rescaled(out: &mut Vec<u8>, mut d: Decimal) {
    if d.scale() < 2 {
        d.rescale(2);
    }
    write_decimal(out, d);
}

/// Appends `d` as written by its own scale (rates: `0.10`, `0.165`).
pub fn write_decimal(out: &mut Vec<u8>, d: Decimal) {
    let m = d.mantissa();
    let scale = d.scale() as usize;
    // Built right to left in one buffer, then appended at once: the fractional digits, the
    // point, the integer digits (at least one), the sign. 96-bit mantissas have 29 digits at
    // most and scales are at most 28.
    let mut buf = [b'0'; 48];
    let mut i = buf.len();
    let mut v = m.unsigned_abs();
    for _ in 0..scale {
        i -= 1;
        buf[i] = b'0' + pop_digit(&mut v);
    }
    if scale > 0 {
        i -= 1;
        buf[i] = b'.';
    }
    if v == 0 {
        i -= 1;
    }
    while v > u128::from(u64::MAX) {
        i -= 1;
        buf[i] = b'0' + pop_digit(&mut v);
    }
    write_digits_u64(&mut buf, &mut i, v as u64);
    if m < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    out.extend_from_slice(&buf[i..]);
}

/// Removes the last decimal digit of `v` and returns it, in `u64` arithmetic when `v` fits.
#[inline]
fn pop_digit(v: &mut u128) -> u8 {
    match u64::try_from(*v) {
        Ok(small) => {
            *v = u128::from(small / 10);
            (small % 10) as u8
        }
        Err(_) => {
            let digit = (*v % 10) as u8;
            *v /= 10;
            digit
        }
    }
}

/// The two digits of every number below 100.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes the decimal digits of `v` right to left, ending at `buf[*i]` (exclusive); `0` writes
/// no digit (the buffer's leading zeros supply it).
#[inline]
fn write_digits_u64<const N: usize>(buf: &mut [u8; N], i: &mut usize, mut v: u64) {
    while v >= 100 {
        let r = (v % 100) as usize;
        v /= 100;
        *i -= 2;
        buf[*i..*i + 2].copy_from_slice(&PAIRS[2 * r..2 * r + 2]);
    }
    if v >= 10 {
        *i -= 2;
        buf[*i..*i + 2].copy_from_slice(&PAIRS[2 * v as usize..2 * v as usize + 2]);
    } else if v > 0 {
        *i -= 1;
        buf[*i] = b'0' + v as u8;
    }
}

/// Formats with exactly two decimal places.
pub fn money_string(d: Decimal) -> String {
    let mut v = Vec::new();
    write_money(&mut v, d);
    String::from_utf8(v).expect("digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn reads_amounts_exactly_as_written() {
        assert_eq!(parse_decimal("19.99", 2, true).unwrap(), dec("19.99"));
        assert_eq!(parse_decimal("85.00", 2, false).unwrap(), dec("85"));
        assert_eq!(parse_decimal("9.5", 2, true).unwrap(), dec("9.5"));
        assert_eq!(parse_decimal("0", 2, true).unwrap(), Decimal::ZERO);
        assert_eq!(parse_decimal("-0.00", 2, true).unwrap(), Decimal::ZERO);
        assert_eq!(parse_decimal("1.5e2", 2, true).unwrap(), dec("150"));
        assert_eq!(parse_decimal("1999e-2", 2, true).unwrap(), dec("19.99"));
        assert_eq!(parse_decimal("85.000", 2, false).unwrap(), dec("85"));
        assert_eq!(parse_decimal("007.10", 2, false).unwrap(), dec("7.1"));
    }

    #[test]
    fn refuses_what_is_not_an_exact_amount() {
        assert_eq!(
            parse_decimal("19.999", 2, true),
            Err(AmountError::TooManyDecimals { max: 2 })
        );
        assert_eq!(
            parse_decimal("1.5", 0, true),
            Err(AmountError::TooManyDecimals { max: 0 })
        );
        assert_eq!(parse_decimal("-5.00", 2, false), Err(AmountError::Negative));
        assert_eq!(parse_decimal("NaN", 2, false), Err(AmountError::NotANumber));
        assert_eq!(parse_decimal("Infinity", 2, false), Err(AmountError::NotANumber));
        assert_eq!(parse_decimal("1e5", 2, false), Err(AmountError::NotANumber));
        assert_eq!(parse_decimal("1.", 2, false), Err(AmountError::NotANumber));
        assert_eq!(parse_decimal(".5", 2, false), Err(AmountError::NotANumber));
        assert_eq!(parse_decimal("1,000.00", 2, false), Err(AmountError::NotANumber));
        assert_eq!(parse_decimal(" 1.00", 2, false), Err(AmountError::NotANumber));
        assert_eq!(parse_decimal("", 2, false), Err(AmountError::Empty));
        assert_eq!(parse_decimal("1000000000000000", 2, true), Err(AmountError::TooLarge));
        assert_eq!(parse_decimal("1e400", 2, true), Err(AmountError::TooLarge));
        assert_eq!(
            parse_decimal("123456789012345678901234567890", 2, true),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn rounds_half_up_where_bankers_rounding_differs() {
        // Banker's rounding would give 0.12, 2.32 and 0.02.
        assert_eq!(round_cents(dec("0.125")), dec("0.13"));
        assert_eq!(round_cents(dec("2.325")), dec("2.33"));
        assert_eq!(round_cents(dec("0.025")), dec("0.03"));
        assert_eq!(round_cents(dec("0.124999")), dec("0.12"));
        // CBP's own examples.
        assert_eq!(round_cents(dec("47.00") * dec("0.10")), dec("4.70"));
        assert_eq!(round_cents(dec("45.00") * dec("0.50")), dec("22.50"));
    }

    #[test]
    fn writes_fixed_two_places() {
        assert_eq!(money_string(dec("8.5")), "8.50");
        assert_eq!(money_string(dec("0")), "0.00");
        assert_eq!(money_string(dec("0.05")), "0.05");
        assert_eq!(money_string(dec("1234567.891").round_dp(2)), "1234567.89");
        // Either side of the eight characters written as one word.
        assert_eq!(money_string(dec("99999.99")), "99999.99");
        assert_eq!(money_string(dec("100000.00")), "100000.00");
        assert_eq!(money_string(dec("10000.10")), "10000.10");
        assert_eq!(money_string(dec("0.07")), "0.07");
        let mut v = Vec::new();
        write_decimal(&mut v, dec("0.165"));
        assert_eq!(v, b"0.165");
        for (d, text) in [
            ("0", "0"),
            ("7", "7"),
            ("0.0", "0.0"),
            ("0.10", "0.10"),
            ("0.005", "0.005"),
            ("100", "100"),
            ("-12.5", "-12.5"),
            ("79228162514264337593543950335", "79228162514264337593543950335"),
            ("7.9228162514264337593543950335", "7.9228162514264337593543950335"),
            ("0.0000000000000000000000000001", "0.0000000000000000000000000001"),
            ("18446744073709551616.00", "18446744073709551616.00"),
        ] {
            let mut v = Vec::new();
            write_decimal(&mut v, dec(d));
            assert_eq!(String::from_utf8(v).unwrap(), text);
        }
    }

    /// A decimal of up to 96 bits: `m`'s 64 bits as the low words, `hi` as the high word.
    fn wide(m: i64, hi: u32, negative: bool, scale: u32) -> Decimal {
        Decimal::from_parts(m as u32, (m >> 32) as u32, hi, negative, scale)
    }

    proptest! {
        #[test]
        fn any_cents_amount_round_trips_exactly(cents in 0u64..100_000_000_000_000) {
            let text = format!("{}.{:02}", cents / 100, cents % 100);
            let d = parse_decimal(&text, 2, true).unwrap();
            prop_assert_eq!(d, Decimal::new(cents as i64, 2));
            prop_assert_eq!(money_string(d), text);
        }

        #[test]
        fn half_up_matches_integer_arithmetic(value_cents in 0i64..10_000_000, rate_milli in 0i64..1000) {
            // duty = value × rate, with value in cents and rate in thousandths:
            // exact product in 1/100_000 dollars, rounded half-up to cents by integers.
            let exact = value_cents * rate_milli; // units of 1e-5 dollars
            let expected_cents = (exact + 500) / 1000;
            let d = round_cents(Decimal::new(value_cents, 2) * Decimal::new(rate_milli, 3));
            prop_assert_eq!(d, Decimal::new(expected_cents, 2));
        }

        #[test]
        fn sum_of_rounded_lines_is_exact(lines in proptest::collection::vec(0i64..1_000_000, 1..50)) {
            let total: Decimal = lines.iter().map(|&c| round_cents(Decimal::new(c, 3))).sum();
            let by_int: i64 = lines.iter().map(|&c| (c + 5) / 10).sum();
            prop_assert_eq!(total, Decimal::new(by_int, 2));
        }

        #[test]
        fn write_decimal_matches_display(m in any::<i64>(), hi in 0u32..=u32::MAX, is_wide in any::<bool>(), scale in 0u32..=28) {
            let d = if is_wide {
                wide(m, hi, m < 0, scale)
            } else {
                Decimal::new(m, scale)
            };
            let mut v = Vec::new();
            write_decimal(&mut v, d);
            // Display prints zero without its sign; so must we, except that it keeps the scale.
            let mut want = d.to_string();
            if d.is_zero() {
                want = want.trim_start_matches('-').to_string();
            }
            prop_assert_eq!(String::from_utf8(v).unwrap(), want);
        }

        #[test]
        fn mul_round_cents_is_the_decimal_computation(
            ma in prop_oneof![0i64..1_000_000, any::<i64>()],
            sa in 0u32..=28,
            mb in prop_oneof![0i64..100_000, any::<i64>()],
            sb in 0u32..=28,
            hi in prop_oneof![Just(0u32), any::<u32>()],
        ) {
            let a = Decimal::new(ma, sa);
            let b = wide(mb, hi, mb < 0, sb);
            for (x, y) in [(a, b), (b, a)] {
                if let Ok(slow) = std::panic::catch_unwind(|| round_cents(x * y)) {
                    prop_assert_eq!(mul_round_cents(x, y).serialize(), slow.serialize(), "{} * {}", x, y);
                }
            }
        }

        #[test]
        fn mul_round_cents_on_amounts_and_rates(cents in 0i64..10_000_000_000, scale in 0u32..=4, rate in 0i64..100_000_000, rate_scale in 0u32..=8) {
            let (a, b) = (Decimal::new(cents, scale), Decimal::new(rate, rate_scale));
            prop_assert_eq!(mul_round_cents(a, b).serialize(), round_cents(a * b).serialize());
        }

        #[test]
        fn round_cents_is_round_then_rescale(m in prop_oneof![0i64..1_000_000, any::<i64>()], hi in prop_oneof![Just(0u32), any::<u32>()], neg in any::<bool>(), scale in 0u32..=28) {
            let d = wide(m, hi, neg, scale);
            let mut want = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
            want.rescale(2);
            prop_assert_eq!(round_cents(d).serialize(), want.serialize());
        }

        #[test]
        fn sum_money_is_the_decimal_sum(
            lines in proptest::collection::vec((prop_oneof![Just(0i64), 0i64..1_000_000, any::<i64>()], prop_oneof![Just(2u32), 0u32..=4]), 0..6),
        ) {
            let amounts: Vec<Decimal> = lines.iter().map(|&(m, s)| Decimal::new(m, s)).collect();
            if let Ok(slow) = std::panic::catch_unwind(|| amounts.iter().copied().sum::<Decimal>()) {
                prop_assert_eq!(sum_money(amounts.iter().copied()).serialize(), slow.serialize());
            }
        }

        #[test]
        fn less_than_product_is_the_decimal_comparison(
            ma in prop_oneof![0i64..100_000, any::<i64>()],
            sa in 0u32..=28,
            mx in prop_oneof![0i64..100_000, any::<i64>()],
            sx in 0u32..=28,
            my in prop_oneof![0i64..100_000, any::<i64>()],
            sy in 0u32..=28,
            hi in prop_oneof![Just(0u32), any::<u32>()],
        ) {
            let a = Decimal::new(ma, sa);
            let x = Decimal::new(mx, sx);
            let y = wide(my, hi, my < 0, sy);
            if let Ok(product) = std::panic::catch_unwind(|| x * y) {
                prop_assert_eq!(less_than_product(a, x, y), a < product, "{} < {} * {}", a, x, y);
            }
            // Equal sides too.
            if let Ok(product) = std::panic::catch_unwind(|| x * Decimal::new(my.rem_euclid(1000), 1)) {
                let y = Decimal::new(my.rem_euclid(1000), 1);
                prop_assert_eq!(less_than_product(product, x, y), false);
            }
        }

        #[test]
        fn write_rate_is_rescale_then_write_decimal(
            m in prop_oneof![0i64..1_000_000, any::<i64>()],
            hi in prop_oneof![Just(0u32), any::<u32>()],
            neg in any::<bool>(),
            scale in prop_oneof![0u32..=4, 0u32..=28],
        ) {
            let d = wide(m, hi, neg, scale);
            let mut want = d;
            if want.scale() < 2 {
                want.rescale(2);
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write_rate(&mut a, d);
            write_decimal(&mut b, want);
            prop_assert_eq!(a, b, "{}", d);
        }

        #[test]
        fn add_round_cents_is_the_decimal_computation(
            ma in prop_oneof![0i64..1_000_000, any::<i64>()],
            sa in prop_oneof![Just(2u32), 0u32..=28],
            mb in prop_oneof![0i64..1_000_000, any::<i64>()],
            sb in prop_oneof![Just(2u32), 0u32..=28],
            hi in prop_oneof![Just(0u32), any::<u32>()],
        ) {
            let a = Decimal::new(ma, sa);
            let b = wide(mb, hi, mb < 0, sb);
            for (x, y) in [(a, b), (b, a)] {
                if let Ok(slow) = std::panic::catch_unwind(|| round_cents(x + y)) {
                    prop_assert_eq!(add_round_cents(x, y).serialize(), slow.serialize(), "{} + {}", x, y);
                }
            }
        }

        #[test]
        fn write_money_matches_write_decimal(m in prop_oneof![0i64..1_000_000, any::<i64>()], scale in 0u32..=4) {
            let d = Decimal::new(m, scale);
            let mut want = d;
            want.rescale(2);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write_money(&mut a, d);
            write_decimal(&mut b, want);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn cents_are_appended_after_what_is_there(
            prefix in "[a-z,:\"]{0,9}",
            cents in prop_oneof![0u64..20_000_000, 9_999_900u64..10_000_100, any::<u64>()],
        ) {
            let mut a = prefix.clone().into_bytes();
            write_cents(&mut a, cents);
            let mut b = prefix.into_bytes();
            write_decimal(&mut b, Decimal::from_i128_with_scale(i128::from(cents), 2));
            prop_assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        }

        #[test]
        fn cmp_amounts_is_the_decimal_order(
            ma in prop_oneof![0i64..100_000, any::<i64>()],
            sa in 0u32..=28,
            mb in prop_oneof![0i64..100_000, any::<i64>()],
            sb in 0u32..=28,
            hi in prop_oneof![Just(0u32), any::<u32>()],
        ) {
            let a = Decimal::new(ma, sa);
            let b = wide(mb, hi, mb < 0, sb);
            prop_assert_eq!(cmp_amounts(a, b), a.cmp(&b));
            prop_assert_eq!(cmp_amounts(b, a), b.cmp(&a));
            // The same value at another scale.
            let mut c = a;
            c.rescale(sa.saturating_add(3).min(28));
            prop_assert_eq!(cmp_amounts(a, c), a.cmp(&c));
        }

        #[test]
        fn plain_amounts_parse_as_the_general_parser_does(
            text in "[+-]?[0-9]{0,21}(\\.[0-9]{0,21})?([eE][+-]?[0-9]{1,3})?|[0-9]{1,6}\\.[0-9]{1,6}|0*[1-9][0-9]{13,16}(\\.[0-9]0*)?",
            max_scale in 0u32..=4,
            allow_exponent in any::<bool>(),
        ) {
            let fast = parse_decimal(&text, max_scale, allow_exponent).map(|d| d.serialize());
            let general = parse_decimal_general(&text, max_scale, allow_exponent).map(|d| d.serialize());
            prop_assert_eq!(fast, general, "{}", text);
        }

        #[test]
        fn never_panics_on_any_text(s in ".{0,40}") {
            let _ = parse_decimal(&s, 2, true);
        }
    }
}
