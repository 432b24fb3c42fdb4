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
    positions: Vec<u32>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            buffers: Buffers::new(64 * 1024),
            tape: Tape(Vec::new()),
            positions: Vec::new(),
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
        let mut tape: Tape<'a> = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let result = match simd_json::fill_tape(scratch.as_mut_slice(), &mut self.buffers, &mut tape) {
            Ok(()) => self.read(raw, &tape.0),
            Err(e) => Err(malformed(raw, &e)),
        };
        self.tape = tape.reset();
        result
    }

    fn read<'a>(&mut self, raw: &'a [u8], nodes: &[Node<'a>]) -> Result<RawManifest<'a>, MessageError> {
        // Map every tape node to the byte offset of its value: the structural indexes minus the
        // separators and closing brackets, which produce no node.
        self.positions.clear();
        for &idx in self.buffers.structural_indexes() {
            match raw.get(idx as usize) {
                Some(b':' | b',' | b']' | b'}') | None => {}
                Some(_) => self.positions.push(idx),
            }
        }
        if self.positions.len() != nodes.len() {
            return Err(Issue::new(
                Code::MalformedJson,
                "$",
                "the message could not be decoded consistently; check that it is one JSON document",
            ));
        }
        let doc = Doc {
            nodes,
            positions: &self.positions,
            raw,
        };
        doc.manifest()
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

struct Doc<'t, 'a> {
    nodes: &'t [Node<'a>],
    positions: &'t [u32],
    raw: &'a [u8],
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

    #[inline]
    fn value(&self, i: usize) -> Json<'a> {
        match self.nodes[i] {
            Node::String(s) => Json::Str(s),
            Node::Object { .. } => Json::Obj(i),
            Node::Array { .. } => Json::Arr(i),
            Node::Static(StaticNode::Null) => Json::Null,
            Node::Static(StaticNode::Bool(b)) => Json::Bool(b),
            Node::Static(_) => Json::Num(self.number_text(i)),
        }
    }

    /// The source text of the number at node `i`.
    fn number_text(&self, i: usize) -> &'a str {
        let start = self.positions[i] as usize;
        let rest = &self.raw[start..];
        let len = rest
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(rest.len());
        // ASCII digits and signs only: always valid UTF-8.
        std::str::from_utf8(&rest[..len]).unwrap_or("")
    }

    /// Calls `f(key, value_index)` for every member of the object at `i`.
    #[inline]
    fn members(&self, i: usize, mut f: impl FnMut(&'a str, usize)) {
        let Node::Object { len, .. } = self.nodes[i] else {
            return;
        };
        let mut j = i + 1;
        for _ in 0..len {
            let key = match self.nodes[j] {
                Node::String(k) => k,
                _ => "",
            };
            f(key, j + 1);
            j += 1 + self.span(j + 1);
        }
    }

    /// Calls `f(element_index)` for every element of the array at `i`.
    #[inline]
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

    fn part<T: Default>(&self, i: usize, fill: impl FnOnce(&Self, usize, &mut T)) -> Part<T> {
        match self.value(i) {
            Json::Obj(o) => {
                let mut t = T::default();
                fill(self, o, &mut t);
                Part::Ok(t)
            }
            other => Part::Wrong(other.kind()),
        }
    }

    fn manifest(&self) -> Result<RawManifest<'a>, MessageError> {
        if !matches!(self.nodes.first(), Some(Node::Object { .. })) {
            let found = if self.nodes.is_empty() {
                "nothing"
            } else {
                self.value(0).kind()
            };
            return Err(Issue::new(
                Code::SchemaViolation,
                "$",
                format!("a manifest must be a JSON object, found {found}"),
            ));
        }
        let mut m = RawManifest::default();
        let mut schema: Field<'a> = None;
        let mut packages: Field<'a> = None;
        self.members(0, |key, v| match key {
            "schema" => schema = Some(self.value(v)),
            "manifest_id" => m.manifest_id = Some(self.value(v)),
            "carrier" => m.carrier = self.part(v, Self::carrier),
            "trip" => m.trip = self.part(v, Self::trip),
            "packages" => packages = Some(self.value(v)),
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
        let packages_at = match packages {
            Some(Json::Arr(i)) => i,
            Some(other) => {
                return Err(Issue::new(
                    Code::SchemaViolation,
                    "$.packages",
                    format!("packages must be an array of package objects, found {}", other.kind()),
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
        m.packages_at = self.positions[packages_at];
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
        self.elements(packages_at, |p| {
            let mut pkg = RawPackage {
                start: self.positions[p],
                ..RawPackage::default()
            };
            match self.value(p) {
                Json::Obj(o) => self.package(o, &mut pkg, &mut m.items),
                other => pkg.not_object = Some(other.kind()),
            }
            m.packages.push(pkg);
        });
        Ok(m)
    }

    fn carrier(&self, o: usize, c: &mut RawCarrier<'a>) {
        self.members(o, |key, v| match key {
            "code" => c.code = Some(self.value(v)),
            "code_type" => c.code_type = Some(self.value(v)),
            _ => {}
        });
    }

    fn trip(&self, o: usize, t: &mut RawTrip<'a>) {
        self.members(o, |key, v| match key {
            "number" => t.number = Some(self.value(v)),
            "departure_country" => t.departure_country = Some(self.value(v)),
            "departure_time" => t.departure_time = Some(self.value(v)),
            "port_of_arrival" => t.port_of_arrival = Some(self.value(v)),
            "arrival_time" => t.arrival_time = Some(self.value(v)),
            _ => {}
        });
    }

    fn package(&self, o: usize, p: &mut RawPackage<'a>, items: &mut Vec<RawItem<'a>>) {
        self.members(o, |key, v| match key {
            "tracking_number" => p.tracking_number = Some(self.value(v)),
            "category" => p.category = Some(self.value(v)),
            "shipper" => {
                p.shipper = self.part(v, |d, o, s: &mut RawShipper<'a>| {
                    d.members(o, |key, v| match key {
                        "name" => s.name = Some(d.value(v)),
                        "country" => s.country = Some(d.value(v)),
                        _ => {}
                    })
                })
            }
            "consignee" => p.consignee = self.part(v, Self::consignee),
            "weight_kg" => p.weight_kg = Some(self.value(v)),
            "items" => match self.value(v) {
                Json::Arr(a) => {
                    let start = items.len() as u32;
                    self.elements(a, |e| {
                        let mut item = RawItem::default();
                        match self.value(e) {
                            Json::Obj(io) => self.item(io, &mut item),
                            other => item.not_object = Some(other.kind()),
                        }
                        items.push(item);
                    });
                    p.items = RawItems::Range(start, items.len() as u32);
                }
                other => p.items = RawItems::Wrong(other.kind()),
            },
            _ => {}
        });
    }

    fn consignee(&self, o: usize, c: &mut RawConsignee<'a>) {
        self.members(o, |key, v| match key {
            "name" => c.name = Some(self.value(v)),
            "address" => {
                c.address = self.part(v, |d, o, a: &mut RawAddress<'a>| {
                    d.members(o, |key, v| match key {
                        "line1" => a.line1 = Some(d.value(v)),
                        "city" => a.city = Some(d.value(v)),
                        "state" => a.state = Some(d.value(v)),
                        "postal_code" => a.postal_code = Some(d.value(v)),
                        "country" => a.country = Some(d.value(v)),
                        _ => {}
                    })
                })
            }
            _ => {}
        });
    }

    fn item(&self, o: usize, it: &mut RawItem<'a>) {
        self.members(o, |key, v| match key {
            "description" => it.description = Some(self.value(v)),
            "hts" => it.hts = Some(self.value(v)),
            "origin_country" => it.origin_country = Some(self.value(v)),
            "quantity" => it.quantity = Some(self.value(v)),
            "value" => it.value = Some(self.value(v)),
            "currency" => it.currency = Some(self.value(v)),
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

    #[test]
    fn value_slice_returns_the_package_as_sent() {
        let text = br#"{"packages":[ {"a":"x}]\"","b":[1,{"c":2}]} , {"d":1}]}"#;
        let start = text.iter().position(|&b| b == b'{').unwrap() + 14;
        assert_eq!(value_slice(text, start), br#"{"a":"x}]\"","b":[1,{"c":2}]}"#);
    }
}
