//! Decoding `manifest/v1` with simd-json into a raw, typed-but-unchecked view.
//!
//! The decoder never fails on content: every field is kept as the JSON value it was
//! (`Json`), and validation decides what is wrong with it. Only message-level failures
//! (not UTF-8 JSON, not an object, no `packages` array, wrong `schema`) end decoding.
//!
//! JSON numbers are read **exactly as written**: simd-json records the byte offset of every
//! value (its structural index), so a number's source text is sliced from the original bytes
//! and parsed as a decimal, never through a binary float.

use crate::error::{Code, Issue};
use simd_json::{Buffers, Node, StaticNode, Tape};
use std::cell::OnceCell;

/// Most packages a manifest may hold (contract §1).
pub const MAX_PACKAGES: usize = 10_000;

/// One JSON value as the manifest had it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// A number, as its source text (`19.99`, `1e3`, `-5`).
    Num(&'a str),
    Str(&'a str),
    /// An object or array: its node index on the tape (contents are decoded where needed).
    Obj(usize),
    Arr(usize),
}

impl Json<'_> {
    /// The JSON type name, for messages: "expected a string, found a number".
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Num(_) => "a number",
            Json::Str(_) => "a string",
            Json::Obj(_) => "an object",
            Json::Arr(_) => "an array",
        }
    }
}

/// A field that is missing, or present with some JSON value.
pub type Field<'a> = Option<Json<'a>>;

/// A nested object: absent, not an object, or decoded.
#[derive(Debug, Clone, Default)]
pub enum Part<T> {
    #[default]
    Missing,
    /// Present but not an object: the JSON type found.
    Wrong(&'static str),
    Ok(T),
}

#[derive(Debug, Clone, Default)]
pub struct RawCarrier<'a> {
    pub code: Field<'a>,
    pub code_type: Field<'a>,
}

#[derive(Debug, Clone, Default)]
pub struct RawTrip<'a> {
    pub number: Field<'a>,
    pub departure_country: Field<'a>,
    pub departure_time: Field<'a>,
    pub port_of_arrival: Field<'a>,
    pub arrival_time: Field<'a>,
}

#[derive(Debug, Clone, Default)]
pub struct RawShipper<'a> {
    pub name: Field<'a>,
    pub country: Field<'a>,
}

#[derive(Debug, Clone, Default)]
pub struct RawAddress<'a> {
    pub line1: Field<'a>,
    pub city: Field<'a>,
    pub state: Field<'a>,
    pub postal_code: Field<'a>,
    pub country: Field<'a>,
}

#[derive(Debug, Clone, Default)]
pub struct RawConsignee<'a> {
    pub name: Field<'a>,
    pub address: Part<RawAddress<'a>>,
}

#[derive(Debug, Clone, Default)]
pub struct RawItem<'a> {
    /// `Some(kind)` when the array element was not an object.
    pub not_object: Option<&'static str>,
    pub description: Field<'a>,
    pub hts: Field<'a>,
    pub origin_country: Field<'a>,
    pub quantity: Field<'a>,
    pub value: Field<'a>,
    pub currency: Field<'a>,
}

/// The items of a package: missing, not an array, or a range in `RawManifest::items`.
#[derive(Debug, Clone, Default)]
pub enum RawItems {
    #[default]
    Missing,
    Wrong(&'static str),
    Range(u32, u32),
}

#[derive(Debug, Clone, Default)]
pub struct RawPackage<'a> {
    /// Byte offset of the package's value in the message (for the dead-letter record).
    pub start: u32,
    /// `Some(kind)` when the array element was not an object.
    pub not_object: Option<&'static str>,
    pub tracking_number: Field<'a>,
    pub category: Field<'a>,
    pub shipper: Part<RawShipper<'a>>,
    pub consignee: Part<RawConsignee<'a>>,
    pub weight_kg: Field<'a>,
    pub items: RawItems,
}

/// A decoded manifest: the header fields and every package, as sent.
#[derive(Debug, Clone, Default)]
pub struct RawManifest<'a> {
    /// Byte offset of the `packages` array in the message.
    pub packages_at: u32,
    pub manifest_id: Field<'a>,
    pub carrier: Part<RawCarrier<'a>>,
    pub trip: Part<RawTrip<'a>>,
    pub packages: Vec<RawPackage<'a>>,
    /// Every item of every package, in order; packages refer to ranges.
    pub items: Vec<RawItem<'a>>,
}

/// Reusable decoding buffers: one per worker thread.
pub struct Decoder {
    buffers: Buffers,
    /// The parser's tape. Empty between messages (so it borrows nothing): only its allocation
    /// is carried from one message to the next.
    tape: Tape<'static>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            buffers: Buffers::new(64 * 1024),
            tape: Tape(Vec::new()),
        }
    }
}

/// A message-level failure: one exception for the whole message.
pub type MessageError = Issue;

impl Decoder {
    /// Decodes one message. `raw` is the message as received (kept intact: number text and
    /// package offsets are read from it); `scratch` receives a copy that simd-json rewrites.
    pub fn decode<'a>(&mut self, raw: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<RawManifest<'a>, MessageError> {
        scratch.clear();
        scratch.extend_from_slice(raw);
        let base = scratch.as_ptr() as usize;
        let mut tape: Tape<'a> = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let result = match simd_json::fill_tape(scratch.as_mut_slice(), &mut self.buffers, &mut tape) {
            Ok(()) => Doc {
                nodes: &tape.0,
                raw,
                base,
                structurals: self.buffers.structural_indexes(),
                table: OnceCell::new(),
            }
            .manifest(),
            Err(e) => Err(malformed(raw, &e)),
        };
        self.tape = tape.reset();
        result
    }
}

fn malformed(raw: &[u8], e: &simd_json::Error) -> Issue {
    let what = format!("{:?}", e.error());
    let message = if std::str::from_utf8(raw).is_err() {
        "the message is not valid UTF-8; manifests must be UTF-8 encoded JSON".to_string()
    } else if let Some(at) = truncated_at(raw) {
        format!("the JSON ends at byte {at} before the document is complete (truncated?); send the whole manifest as one JSON object")
    } else if raw.iter().all(u8::is_ascii_whitespace) {
        "the message is empty; expected one JSON object (manifest/v1)".to_string()
    } else {
        match e.index() {
            0 => format!("the message is not valid JSON ({what}); expected one JSON object (manifest/v1)"),
            i => format!("the message is not valid JSON: {what} near byte {i}; expected one JSON object (manifest/v1)"),
        }
    };
    Issue::new(Code::MalformedJson, "$", message)
}

/// `Some(len)` when the text ends inside a string or with brackets still open.
fn truncated_at(raw: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0i64, false, false);
    for &b in raw {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth -= 1,
                _ => {}
            }
        }
    }
    (in_string || depth > 0).then_some(raw.len())
}

/// simd-json's tape of one message, read into a `RawManifest`.
///
/// Byte offsets (number text, package starts) are read off the strings: simd-json leaves
/// each string's text in the buffer it parsed at the offset where it stands in the message
/// (right after its opening quote), so a string's offset is its address minus the buffer's.
/// A member's value follows its key's closing quote and `:`. Anything else (a package that is
/// an empty object or not an object, a number outside an object) takes its offset from a
/// node → offset table built from simd-json's structural indexes, only when first needed.
struct Doc<'t, 'a> {
    nodes: &'t [Node<'a>],
    raw: &'a [u8],
    /// Address of the buffer simd-json parsed (a copy of `raw`).
    base: usize,
    structurals: &'t [u32],
    table: OnceCell<Vec<u32>>,
}

#[inline]
fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> Doc<'_, 'a> {
    /// Number of tape nodes the value at `i` spans.
    #[inline]
    fn span(&self, i: usize) -> usize {
        match self.nodes[i] {
            Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
            _ => 1,
        }
    }

    /// The JSON type name of the value at node `i`.
    #[inline]
    fn kind(&self, i: usize) -> &'static str {
        match self.nodes[i] {
            Node::String(_) => "a string",
            Node::Object { .. } => "an object",
            Node::Array { .. } => "an array",
            Node::Static(StaticNode::Null) => "null",
            Node::Static(StaticNode::Bool(_)) => "a boolean",
            Node::Static(_) => "a number",
        }
    }

    /// The value at node `v` (`node`), the value of the member whose key is `key`.
    #[inline(always)]
    fn member(&self, key: &'a str, v: usize, node: &Node<'a>) -> Json<'a> {
        match *node {
            Node::String(s) => Json::Str(s),
            Node::Object { .. } => Json::Obj(v),
            Node::Array { .. } => Json::Arr(v),
            Node::Static(StaticNode::Null) => Json::Null,
            Node::Static(StaticNode::Bool(b)) => Json::Bool(b),
            Node::Static(_) => Json::Num(self.number_text(self.member_at(key, v))),
        }
    }

    /// The source text of the number starting at byte `start`.
    fn number_text(&self, start: usize) -> &'a str {
        let rest = self.raw.get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(rest.len());
        let text = &rest[..len];
        debug_assert!(text.is_ascii());
        // SAFETY: `text` holds only the ASCII bytes matched above (digits, signs, `.`, `e`,
        // `E`), and ASCII is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(text) }
    }

    /// Byte offset of the opening quote of a string taken from the tape.
    #[inline]
    fn string_at(&self, s: &str) -> Option<usize> {
        let at = (s.as_ptr() as usize).wrapping_sub(self.base);
        (at >= 1 && at <= self.raw.len() && self.raw[at - 1] == b'"').then_some(at - 1)
    }

    /// Byte offset of the value at node `v`, whose key is `key`: after the key's closing
    /// quote, `:` and any whitespace.
    fn member_at(&self, key: &str, v: usize) -> usize {
        let raw = self.raw;
        let Some(q) = self.string_at(key) else {
            return self.table_at(v);
        };
        // The key's closing quote. Without escapes the key is as long as its text; a quote
        // there not preceded by a backslash is then the closing one (an earlier unescaped
        // quote would end a shorter key). Otherwise scan the escapes.
        let mut i = q + 1 + key.len();
        if !(raw.get(i) == Some(&b'"') && raw[i - 1] != b'\\') {
            i = q + 1;
            while let Some(&b) = raw.get(i) {
                match b {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
        }
        i += 1;
        while raw.get(i).is_some_and(|&b| is_json_space(b)) {
            i += 1;
        }
        if raw.get(i) != Some(&b':') {
            return self.table_at(v);
        }
        i += 1;
        while raw.get(i).is_some_and(|&b| is_json_space(b)) {
            i += 1;
        }
        i
    }

    /// Byte offset of the element at node `e` of an array.
    fn element_at(&self, e: usize) -> usize {
        match self.nodes[e] {
            Node::String(s) => self.string_at(s).unwrap_or_else(|| self.table_at(e)),
            Node::Object { len, .. } if len > 0 => {
                // The object's `{`: before its first key and any whitespace.
                let first = match self.nodes[e + 1] {
                    Node::String(k) => self.string_at(k),
                    _ => None,
                };
                let Some(mut i) = first else {
                    return self.table_at(e);
                };
                while i > 0 && is_json_space(self.raw[i - 1]) {
                    i -= 1;
                }
                if i > 0 && self.raw[i - 1] == b'{' {
                    i - 1
                } else {
                    self.table_at(e)
                }
            }
            _ => self.table_at(e),
        }
    }

    /// Byte offset of node `i` from the node → offset table: the structural indexes minus the
    /// separators and closing brackets, which produce no node.
    #[cold]
    fn table_at(&self, i: usize) -> usize {
        let table = self.table.get_or_init(|| {
            self.structurals
                .iter()
                .copied()
                .filter(|&idx| !matches!(self.raw.get(idx as usize), Some(b':' | b',' | b']' | b'}') | None))
                .collect()
        });
        debug_assert_eq!(table.len(), self.nodes.len());
        table.get(i).map_or(0, |&p| p as usize)
    }

    /// Calls `f(key, value_index, value_node)` for every member of the object at `i`.
    #[inline(always)]
    fn members(&self, i: usize, mut f: impl FnMut(&'a str, usize, &Node<'a>)) {
        let Some(&Node::Object { count, .. }) = self.nodes.get(i) else {
            return;
        };
        // The object's nodes: each member's key, then its value and the value's nodes.
        let Some(mut rest) = self.nodes.get(i + 1..i + 1 + count) else {
            return;
        };
        let mut v = i + 2;
        while let [key, value, tail @ ..] = rest {
            let key = match *key {
                Node::String(k) => k,
                _ => "",
            };
            f(key, v, value);
            let nested = match *value {
                Node::Object { count, .. } | Node::Array { count, .. } => count,
                _ => 0,
            };
            rest = tail.get(nested..).unwrap_or_default();
            v += nested + 2;
        }
    }

    /// Calls `f(element_index)` for every element of the array at `i`.
    #[inline(always)]
    fn elements(&self, i: usize, mut f: impl FnMut(usize)) {
        let Node::Array { len, .. } = self.nodes[i] else {
            return;
        };
        let mut j = i + 1;
        for _ in 0..len {
            f(j);
            j += self.span(j);
        }
    }

    fn array_len(&self, i: usize) -> usize {
        match self.nodes[i] {
            Node::Array { len, .. } => len,
            _ => 0,
        }
    }

    /// Fills `part` from the object at node `v` (or records the type found there).
    #[inline(always)]
    fn part<T: Default>(&self, v: usize, part: &mut Part<T>, fill: impl FnOnce(&Self, usize, &mut T)) {
        match self.nodes[v] {
            Node::Object { .. } => {
                *part = Part::Ok(T::default());
                if let Part::Ok(t) = part {
                    fill(self, v, t);
                }
            }
            _ => *part = Part::Wrong(self.kind(v)),
        }
    }

    fn manifest(&self) -> Result<RawManifest<'a>, MessageError> {
        if !matches!(self.nodes.first(), Some(Node::Object { .. })) {
            let found = if self.nodes.is_empty() { "nothing" } else { self.kind(0) };
            return Err(Issue::new(
                Code::SchemaViolation,
                "$",
                format!("a manifest must be a JSON object, found {found}"),
            ));
        }
        let mut m = RawManifest::default();
        let mut schema: Field<'a> = None;
        let mut packages: Option<(&'a str, usize)> = None;
        self.members(0, |key, v, n| match key {
            "schema" => schema = Some(self.member(key, v, n)),
            "manifest_id" => m.manifest_id = Some(self.member(key, v, n)),
            "carrier" => self.part(v, &mut m.carrier, Self::carrier),
            "trip" => self.part(v, &mut m.trip, Self::trip),
            "packages" => packages = Some((key, v)),
            _ => {}
        });
        match schema {
            Some(Json::Str("manifest/v1")) => {}
            Some(Json::Str(other)) => {
                return Err(Issue::new(
                    Code::UnsupportedSchema,
                    "$.schema",
                    format!(
                        "schema \"{}\" is not supported; this service reads \"manifest/v1\"",
                        clip(other)
                    ),
                ))
            }
            Some(other) => {
                return Err(Issue::new(
                    Code::UnsupportedSchema,
                    "$.schema",
                    format!("schema must be the string \"manifest/v1\", found {}", other.kind()),
                ))
            }
            None => {
                return Err(Issue::new(
                    Code::UnsupportedSchema,
                    "$.schema",
                    "schema is missing; set \"schema\": \"manifest/v1\"",
                ))
            }
        }
        let (packages_key, packages_at) = match packages {
            Some((key, v)) if matches!(self.nodes[v], Node::Array { .. }) => (key, v),
            Some((_, v)) => {
                return Err(Issue::new(
                    Code::SchemaViolation,
                    "$.packages",
                    format!("packages must be an array of package objects, found {}", self.kind(v)),
                ))
            }
            None => {
                return Err(Issue::new(
                    Code::SchemaViolation,
                    "$.packages",
                    "packages is missing; a manifest lists 1 to 10000 packages",
                ))
            }
        };
        m.packages_at = self.member_at(packages_key, packages_at) as u32;
        let count = self.array_len(packages_at);
        if count == 0 {
            return Err(Issue::new(
                Code::SchemaViolation,
                "$.packages",
                "packages is empty; a manifest lists 1 to 10000 packages",
            ));
        }
        if count > MAX_PACKAGES {
            return Err(Issue::new(
                Code::SchemaViolation,
                "$.packages",
                format!("packages has {count} entries; a manifest lists at most {MAX_PACKAGES}: split it into several manifests"),
            ));
        }
        m.packages.reserve_exact(count);
        m.items.reserve(count * 2);
        self.elements(packages_at, |p| {
            // Built in place: a raw package is a few hundred bytes.
            m.packages.push(RawPackage {
                start: self.element_at(p) as u32,
                ..RawPackage::default()
            });
            let Some(pkg) = m.packages.last_mut() else {
                return;
            };
            match self.nodes[p] {
                Node::Object { .. } => self.package(p, pkg, &mut m.items),
                _ => pkg.not_object = Some(self.kind(p)),
            }
        });
        Ok(m)
    }

    fn carrier(&self, o: usize, c: &mut RawCarrier<'a>) {
        self.members(o, |key, v, n| match key {
            "code" => c.code = Some(self.member(key, v, n)),
            "code_type" => c.code_type = Some(self.member(key, v, n)),
            _ => {}
        });
    }

    fn trip(&self, o: usize, t: &mut RawTrip<'a>) {
        self.members(o, |key, v, n| match key {
            "number" => t.number = Some(self.member(key, v, n)),
            "departure_country" => t.departure_country = Some(self.member(key, v, n)),
            "departure_time" => t.departure_time = Some(self.member(key, v, n)),
            "port_of_arrival" => t.port_of_arrival = Some(self.member(key, v, n)),
            "arrival_time" => t.arrival_time = Some(self.member(key, v, n)),
            _ => {}
        });
    }

    fn package(&self, o: usize, p: &mut RawPackage<'a>, items: &mut Vec<RawItem<'a>>) {
        self.members(o, |key, v, n| match key {
            "tracking_number" => p.tracking_number = Some(self.member(key, v, n)),
            "category" => p.category = Some(self.member(key, v, n)),
            "shipper" => self.part(v, &mut p.shipper, |d, o, s: &mut RawShipper<'a>| {
                d.members(o, |key, v, n| match key {
                    "name" => s.name = Some(d.member(key, v, n)),
                    "country" => s.country = Some(d.member(key, v, n)),
                    _ => {}
                })
            }),
            "consignee" => self.part(v, &mut p.consignee, Self::consignee),
            "weight_kg" => p.weight_kg = Some(self.member(key, v, n)),
            "items" => match n {
                Node::Array { .. } => {
                    let start = items.len() as u32;
                    self.elements(v, |e| {
                        items.push(RawItem::default());
                        let Some(item) = items.last_mut() else {
                            return;
                        };
                        match self.nodes[e] {
                            Node::Object { .. } => self.item(e, item),
                            _ => item.not_object = Some(self.kind(e)),
                        }
                    });
                    p.items = RawItems::Range(start, items.len() as u32);
                }
                _ => p.items = RawItems::Wrong(self.kind(v)),
            },
            _ => {}
        });
    }

    fn consignee(&self, o: usize, c: &mut RawConsignee<'a>) {
        self.members(o, |key, v, n| match key {
            "name" => c.name = Some(self.member(key, v, n)),
            "address" => self.part(v, &mut c.address, |d, o, a: &mut RawAddress<'a>| {
                d.members(o, |key, v, n| match key {
                    "line1" => a.line1 = Some(d.member(key, v, n)),
                    "city" => a.city = Some(d.member(key, v, n)),
                    "state" => a.state = Some(d.member(key, v, n)),
                    "postal_code" => a.postal_code = Some(d.member(key, v, n)),
                    "country" => a.country = Some(d.member(key, v, n)),
                    _ => {}
                })
            }),
            _ => {}
        });
    }

    fn item(&self, o: usize, it: &mut RawItem<'a>) {
        self.members(o, |key, v, n| match key {
            "description" => it.description = Some(self.member(key, v, n)),
            "hts" => it.hts = Some(self.member(key, v, n)),
            "origin_country" => it.origin_country = Some(self.member(key, v, n)),
            "quantity" => it.quantity = Some(self.member(key, v, n)),
            "value" => it.value = Some(self.member(key, v, n)),
            "currency" => it.currency = Some(self.member(key, v, n)),
            _ => {}
        });
    }
}

pub(crate) fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The bytes of the JSON value starting at `start` in `raw` (an object or array: up to its
/// matching bracket). Used to put one package, exactly as sent, into a dead-letter record.
pub fn value_slice(raw: &[u8], start: usize) -> &[u8] {
    let mut depth = 0usize;
    let mut i = start;
    let mut in_string = false;
    while i < raw.len() {
        let b = raw[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return &raw[start..=i];
                    }
                }
                _ if depth == 0 => {
                    // A scalar: up to the next separator.
                    let end = raw[i..]
                        .iter()
                        .position(|c| matches!(c, b',' | b']' | b'}'))
                        .map_or(raw.len(), |p| i + p);
                    return trim_end(&raw[start..end]);
                }
                _ => {}
            }
        }
        i += 1;
    }
    &raw[start.min(raw.len())..]
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b.iter().rev().take_while(|c| c.is_ascii_whitespace()).count();
    &b[..b.len() - n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<RawManifest<'static>, Issue> {
        let raw: &'static [u8] = Box::leak(text.as_bytes().to_vec().into_boxed_slice());
        let scratch: &'static mut Vec<u8> = Box::leak(Box::default());
        Decoder::default().decode(raw, scratch)
    }

    #[test]
    fn numbers_keep_their_source_text() {
        let m = decode(r#"{"schema":"manifest/v1","packages":[{"weight_kg":0.1,"items":[{"value":19.99},{"value":1e2},{"value":0.30000000000000004},{"value":123456789012345678901234567890}]}]}"#).unwrap();
        let values: Vec<_> = m.items.iter().map(|i| i.value).collect();
        assert_eq!(
            values,
            vec![
                Some(Json::Num("19.99")),
                Some(Json::Num("1e2")),
                Some(Json::Num("0.30000000000000004")),
                Some(Json::Num("123456789012345678901234567890"))
            ]
        );
        assert_eq!(m.packages[0].weight_kg, Some(Json::Num("0.1")));
    }

    #[test]
    fn unknown_fields_and_nesting_are_skipped() {
        let m = decode(r#"{"x":{"a":[1,{"b":[2,3]}]},"schema":"manifest/v1","packages":[{"extra":[[[]]],"tracking_number":"RR473124829DE","items":[{"z":{"y":1},"value":"5"}]},7],"tail":1}"#).unwrap();
        assert_eq!(m.packages.len(), 2);
        assert_eq!(m.packages[0].tracking_number, Some(Json::Str("RR473124829DE")));
        assert_eq!(m.items[0].value, Some(Json::Str("5")));
        assert_eq!(m.packages[1].not_object, Some("a number"));
    }

    #[test]
    fn message_level_failures() {
        assert_eq!(
            decode(r#"{"schema":"manifest/v1","packages":[{"tr"#).unwrap_err().code,
            Code::MalformedJson
        );
        assert_eq!(decode("[1,2]").unwrap_err().code, Code::SchemaViolation);
        assert_eq!(
            decode(r#"{"schema":"manifest/v2","packages":[]}"#).unwrap_err().code,
            Code::UnsupportedSchema
        );
        assert_eq!(
            decode(r#"{"packages":[{}]}"#).unwrap_err().code,
            Code::UnsupportedSchema
        );
        assert_eq!(
            decode(r#"{"schema":"manifest/v1"}"#).unwrap_err().code,
            Code::SchemaViolation
        );
        assert_eq!(
            decode(r#"{"schema":"manifest/v1","packages":[]}"#).unwrap_err().code,
            Code::SchemaViolation
        );
        assert_eq!(
            decode(r#"{"schema":"manifest/v1","packages":{}}"#).unwrap_err().code,
            Code::SchemaViolation
        );
        assert_eq!(decode("").unwrap_err().code, Code::MalformedJson);
    }

    /// Checks that every member value's and array element's offset, as read off the strings,
    /// is the one simd-json's structural indexes give.
    fn offsets_agree_with_the_table(text: &str) {
        let raw = text.as_bytes();
        let mut scratch = raw.to_vec();
        let base = scratch.as_ptr() as usize;
        let mut buffers = Buffers::new(1024);
        let mut tape = Tape(Vec::new());
        simd_json::fill_tape(&mut scratch, &mut buffers, &mut tape).expect("valid JSON");
        let doc = Doc {
            nodes: &tape.0,
            raw,
            base,
            structurals: buffers.structural_indexes(),
            table: OnceCell::new(),
        };
        let mut checked = 0;
        for i in 0..doc.nodes.len() {
            match doc.nodes[i] {
                Node::Object { .. } => doc.members(i, |key, v, _| {
                    assert_eq!(doc.member_at(key, v), doc.table_at(v), "member {key:?} in {text}");
                    checked += 1;
                }),
                Node::Array { .. } => doc.elements(i, |e| {
                    assert_eq!(doc.element_at(e), doc.table_at(e), "element {e} in {text}");
                    checked += 1;
                }),
                _ => {}
            }
        }
        assert!(checked > 20);
    }

    /// A manifest with odd members: `~` may become whitespace, `@` escapes the next character.
    const ODD: &str = r#"~{~"@schema"~:~"manifest/v1"~,~"@packages"~:~[~{~"@tracking_number"~:~"R\"1"~,~"@weight_kg"~:~1.5e2~,~"@items"~:~[~{~"@value"~:~-0.5~,~"@quantity"~:~3~}~,~7~,~"x"~,~{~}~,~[~]~,~null~]~}~,~{~}~,~12~,~"s\\"~,~true~,~{~"@a\"b"~:~0~,~"@"~:~{~"@"~:~[~1~]~}~}~,~{~"@p"~:~"@q"~}~]~,~"@n"~:~1~}~"#;

    fn odd_manifest(spaces: &[u8], escapes: &[bool]) -> String {
        let (mut out, mut w, mut e, mut escape_next) = (String::new(), 0, 0, false);
        for c in ODD.chars() {
            match c {
                '~' => {
                    let n = spaces[w % spaces.len()];
                    w += 1;
                    out.push_str(&" \n\t\r"[..(n % 5) as usize]);
                }
                '@' => {
                    escape_next = escapes[e % escapes.len()];
                    e += 1;
                }
                c if escape_next && c.is_ascii_alphanumeric() => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                    escape_next = false;
                }
                c => {
                    out.push(c);
                    escape_next = false;
                }
            }
        }
        out
    }

    #[test]
    fn offsets_read_off_strings_are_the_structural_ones() {
        offsets_agree_with_the_table(&odd_manifest(&[0], &[false]));
        offsets_agree_with_the_table(&odd_manifest(&[1, 4, 2], &[true, false]));
        let m = decode(&odd_manifest(&[3], &[true])).unwrap();
        assert_eq!(m.packages.len(), 7);
        assert_eq!(m.packages[0].weight_kg, Some(Json::Num("1.5e2")));
        assert_eq!(m.items[0].value, Some(Json::Num("-0.5")));
        assert_eq!(m.items[0].quantity, Some(Json::Num("3")));
    }

    proptest::proptest! {
        #[test]
        fn offsets_agree_whatever_the_spacing(
            spaces in proptest::collection::vec(0u8..5, 1..80),
            escapes in proptest::collection::vec(proptest::bool::ANY, 1..20),
        ) {
            let text = odd_manifest(&spaces, &escapes);
            offsets_agree_with_the_table(&text);
            let m = decode(&text).unwrap();
            // Package offsets are where each package's value starts.
            for p in &m.packages {
                let b = text.as_bytes()[p.start as usize];
                proptest::prop_assert!(b"{[\"1tn".contains(&b), "{}", b as char);
            }
        }
    }

    #[test]
    fn value_slice_returns_the_package_as_sent() {
        let text = br#"{"packages":[ {"a":"x}]\"","b":[1,{"c":2}]} , {"d":1}]}"#;
        let start = text.iter().position(|&b| b == b'{').unwrap() + 14;
        assert_eq!(value_slice(text, start), br#"{"a":"x}]\"","b":[1,{"c":2}]}"#);
    }
}
