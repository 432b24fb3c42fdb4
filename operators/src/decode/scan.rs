//! A strict one-pass reader for the common shape of a message, straight into a
//! [`RawManifest`], without a tape.
//!
//! It accepts only a subset of JSON: an object at the root, strings without escapes, plain
//! numbers without exponent, and at most [`MAX_DEPTH`] levels of nesting. On
//! anything else, valid or not, it gives up (`None`) and the decoder runs simd-json, which
//! then decides and words every error. So this reader never has to be lenient or explain
//! anything: it must only never accept what simd-json would refuse (it checks the full
//! grammar, and UTF-8, for that), and it must give exactly the `RawManifest` that `Doc` gives
//! from simd-json's tape: the same fields, the same last-one-wins for repeated keys, and the
//! same tape node index in `Json::Obj`/`Json::Arr` (it counts the nodes the tape would hold).
//!
//! Strings are not copied: each is a slice of the message.

use super::{
    check_count, check_schema, packages_error, Field, Json, MessageError, Part, RawAddress, RawCarrier, RawConsignee,
    RawItem, RawItems, RawManifest, RawPackage, RawShipper, RawTrip,
};

/// Deepest nesting the reader follows; deeper messages go to simd-json.
const MAX_DEPTH: u32 = 64;
/// Longest number the reader takes; longer ones go to simd-json (which may refuse them).
const MAX_NUMBER_LEN: usize = 18;

/// `None`: not in the subset this reader takes (use simd-json). `Some(result)`: the same
/// result as simd-json and `Doc` would give.
pub(super) fn read(raw: &[u8]) -> Option<Result<RawManifest<'_>, MessageError>> {
    let text = std::str::from_utf8(raw).ok()?;
    if raw.len() >= u32::MAX as usize {
        return None;
    }
    let mut r = Reader {
        b: raw,
        text,
        i: 0,
        nodes: 0,
        depth: 0,
    };
    r.ws();
    if r.peek() != b'{' {
        return None;
    }
    let mut m = RawManifest::default();
    // Room for the usual sizes (~500 bytes of JSON per package, ~1.5 items per package), so
    // the vectors of large structs do not grow and move repeatedly.
    m.packages.reserve(raw.len() / 256 + 1);
    m.items.reserve(raw.len() / 128 + 1);
    let mut schema: Field<'_> = None;
    let mut packages: Field<'_> = None;
    r.object(|r, key| {
        match key {
            "schema" => schema = Some(r.value()?),
            "manifest_id" => m.manifest_id = Some(r.value()?),
            "carrier" => m.carrier = r.part(Reader::carrier)?,
            "trip" => m.trip = r.part(Reader::trip)?,
            "packages" if r.peek() == b'[' => {
                // Only the last `packages` counts: forget an earlier one.
                m.packages.clear();
                m.items.clear();
                m.packages_at = r.i as u32;
                let at = r.nodes;
                let (list, items) = (&mut m.packages, &mut m.items);
                r.array(|r| {
                    let mut pkg = RawPackage {
                        start: r.i as u32,
                        ..RawPackage::default()
                    };
                    if r.peek() == b'{' {
                        r.package(&mut pkg, items)?;
                    } else {
                        pkg.not_object = Some(r.value()?.kind());
                    }
                    list.push(pkg);
                    Some(())
                })?;
                packages = Some(Json::Arr(at));
            }
            "packages" => packages = Some(r.value()?),
            _ => {
                r.value()?;
            }
        }
        Some(())
    })?;
    r.ws();
    if r.i != raw.len() {
        return None;
    }
    Some(check(schema, packages, m))
}

/// The message-level checks, in the order `Doc::manifest` makes them.
fn check<'a>(schema: Field<'a>, packages: Field<'a>, m: RawManifest<'a>) -> Result<RawManifest<'a>, MessageError> {
    check_schema(schema)?;
    if !matches!(packages, Some(Json::Arr(_))) {
        return Err(packages_error(packages));
    }
    check_count(m.packages.len())?;
    Ok(m)
}

struct Reader<'a> {
    b: &'a [u8],
    text: &'a str,
    i: usize,
    /// Tape nodes so far: the index simd-json's tape would give the next node.
    nodes: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// A string at `i` (which must be a quote), as a slice of the message.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        if self.peek() != b'"' {
            return None;
        }
        let start = self.i + 1;
        let end = string_end(self.b, start)?;
        self.i = end + 1;
        self.nodes += 1;
        self.text.get(start..end)
    }

    /// Any value; objects and arrays are checked and skipped, as `Json::Obj`/`Json::Arr` of
    /// their node index.
    fn value(&mut self) -> Option<Json<'a>> {
        let at = self.nodes;
        match self.peek() {
            b'"' => self.string().map(Json::Str),
            b'0'..=b'9' | b'-' => {
                let start = self.i;
                let digits = if self.b[start] == b'-' { start + 1 } else { start };
                if !matches!(self.b.get(digits), Some(b'0'..=b'9')) {
                    return None;
                }
                let end = number_end(self.b, digits)?;
                self.i = end;
                self.nodes += 1;
                self.text.get(start..end).map(Json::Num)
            }
            b't' => self.word(b"true", Json::Bool(true)),
            b'f' => self.word(b"false", Json::Bool(false)),
            b'n' => self.word(b"null", Json::Null),
            b'{' => {
                self.object(|r, _| r.value().map(|_| ()))?;
                Some(Json::Obj(at))
            }
            b'[' => {
                self.array(|r| r.value().map(|_| ()))?;
                Some(Json::Arr(at))
            }
            _ => None,
        }
    }

    #[inline]
    fn word(&mut self, word: &[u8], json: Json<'a>) -> Option<Json<'a>> {
        if !self.b[self.i..].starts_with(word) {
            return None;
        }
        self.i += word.len();
        self.nodes += 1;
        Some(json)
    }

    /// An object at `i`: calls `member(self, key)` with `i` at each member's value, which
    /// `member` must read.
    #[inline]
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.open(b'{')?;
        if self.peek() == b'}' {
            return self.close();
        }
        loop {
            let key = self.string()?;
            self.ws();
            if self.peek() != b':' {
                return None;
            }
            self.i += 1;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.peek() {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => return self.close(),
                _ => return None,
            }
        }
    }

    /// An array at `i`: calls `element(self)` with `i` at each element, which it must read.
    #[inline]
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.open(b'[')?;
        if self.peek() == b']' {
            return self.close();
        }
        loop {
            element(self)?;
            self.ws();
            match self.peek() {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => return self.close(),
                _ => return None,
            }
        }
    }

    #[inline(always)]
    fn open(&mut self, bracket: u8) -> Option<()> {
        if self.peek() != bracket || self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        self.nodes += 1;
        self.i += 1;
        self.ws();
        Some(())
    }

    #[inline(always)]
    fn close(&mut self) -> Option<()> {
        self.depth -= 1;
        self.i += 1;
        Some(())
    }

    /// A nested object field: read with `fill` when it is an object, else its JSON type.
    #[inline]
    fn part<T: Default>(&mut self, fill: impl FnOnce(&mut Self, &mut T) -> Option<()>) -> Option<Part<T>> {
        if self.peek() == b'{' {
            let mut t = T::default();
            fill(self, &mut t)?;
            Some(Part::Ok(t))
        } else {
            Some(Part::Wrong(self.value()?.kind()))
        }
    }

    fn carrier(&mut self, c: &mut RawCarrier<'a>) -> Option<()> {
        self.object(|r, key| {
            match key {
                "code" => c.code = Some(r.value()?),
                "code_type" => c.code_type = Some(r.value()?),
                _ => {
                    r.value()?;
                }
            }
            Some(())
        })
    }

    fn trip(&mut self, t: &mut RawTrip<'a>) -> Option<()> {
        self.object(|r, key| {
            let v = Some(r.value()?);
            match key {
                "number" => t.number = v,
                "departure_country" => t.departure_country = v,
                "departure_time" => t.departure_time = v,
                "port_of_arrival" => t.port_of_arrival = v,
                "arrival_time" => t.arrival_time = v,
                _ => {}
            }
            Some(())
        })
    }

    fn package(&mut self, p: &mut RawPackage<'a>, items: &mut Vec<RawItem<'a>>) -> Option<()> {
        self.object(|r, key| {
            match key {
                "tracking_number" => p.tracking_number = Some(r.value()?),
                "category" => p.category = Some(r.value()?),
                "shipper" => p.shipper = r.part(Reader::shipper)?,
                "consignee" => p.consignee = r.part(Reader::consignee)?,
                "weight_kg" => p.weight_kg = Some(r.value()?),
                "items" if r.peek() == b'[' => {
                    let start = items.len() as u32;
                    r.array(|r| {
                        let mut item = RawItem::default();
                        if r.peek() == b'{' {
                            r.item(&mut item)?;
                        } else {
                            item.not_object = Some(r.value()?.kind());
                        }
                        items.push(item);
                        Some(())
                    })?;
                    p.items = RawItems::Range(start, items.len() as u32);
                }
                "items" => p.items = RawItems::Wrong(r.value()?.kind()),
                _ => {
                    r.value()?;
                }
            }
            Some(())
        })
    }

    fn shipper(&mut self, s: &mut RawShipper<'a>) -> Option<()> {
        self.object(|r, key| {
            let v = Some(r.value()?);
            match key {
                "name" => s.name = v,
                "country" => s.country = v,
                _ => {}
            }
            Some(())
        })
    }

    fn consignee(&mut self, c: &mut RawConsignee<'a>) -> Option<()> {
        self.object(|r, key| {
            match key {
                "name" => c.name = Some(r.value()?),
                "address" => c.address = r.part(Reader::address)?,
                _ => {
                    r.value()?;
                }
            }
            Some(())
        })
    }

    fn address(&mut self, a: &mut RawAddress<'a>) -> Option<()> {
        self.object(|r, key| {
            let v = Some(r.value()?);
            match key {
                "line1" => a.line1 = v,
                "city" => a.city = v,
                "state" => a.state = v,
                "postal_code" => a.postal_code = v,
                "country" => a.country = v,
                _ => {}
            }
            Some(())
        })
    }

    fn item(&mut self, it: &mut RawItem<'a>) -> Option<()> {
        self.object(|r, key| {
            let v = Some(r.value()?);
            match key {
                "description" => it.description = v,
                "hts" => it.hts = v,
                "origin_country" => it.origin_country = v,
                "quantity" => it.quantity = v,
                "value" => it.value = v,
                "currency" => it.currency = v,
                _ => {}
            }
            Some(())
        })
    }
}

/// The offset of the closing quote of a string whose text starts at `i`; `None` at a
/// backslash, a control character or the end of the message.
#[inline(always)]
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Eight bytes at a time: flags bytes equal to `"` or `\`, or below 0x20. The lowest flag
    // is always exact (borrows only run towards higher bytes), which is the one we use.
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let found = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGH;
        if found != 0 {
            let j = i + (found.trailing_zeros() / 8) as usize;
            return (b[j] == b'"').then_some(j);
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => return Some(i),
            b'\\' | 0..=0x1f => return None,
            _ => i += 1,
        }
    }
    None
}

/// The end of a plain number whose digits start at `start` (`0`, `12`, `19.99`, after any
/// minus sign); `None` for anything
/// else (leading zeros, a bare point, an exponent, too many digits). The byte after it is
/// checked by the caller's grammar (`,`, `}`, `]` or whitespace).
#[inline]
fn number_end(b: &[u8], start: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    if b[start] == b'0' && i != start + 1 {
        return None;
    }
    if b.get(i) == Some(&b'.') {
        let f = i + 1;
        i = digits(f);
        if i == f {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) || i - start > MAX_NUMBER_LEN {
        return None;
    }
    Some(i)
}
