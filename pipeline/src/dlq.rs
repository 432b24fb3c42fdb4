//! Dead-letter records (`dlq/v1`, contract §3): one per rejected package or undecodable
//! message, with enough to fix and replay without the original topic.

use base64::Engine;
use dutyflow_operators::decode::value_slice;
use dutyflow_operators::encode::write_str;
use dutyflow_operators::error::Issue;
use std::ops::Range;

pub const H_CODE: &str = "dutyflow.error.code";
pub const H_STAGE: &str = "dutyflow.error.stage";
pub const H_TOPIC: &str = "dutyflow.source.topic";
pub const H_PARTITION: &str = "dutyflow.source.partition";
pub const H_OFFSET: &str = "dutyflow.source.offset";
pub const H_REPLAY: &str = "dutyflow.replay.count";
/// On every output (assessment or dead letter): the input message's Kafka timestamp, in ms
/// since the epoch, so consumers can measure end-to-end latency.
pub const H_SOURCE_TIMESTAMP: &str = "dutyflow.source.timestamp";

/// Where a message came from.
#[derive(Debug, Clone)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub replay_count: u32,
}

/// One record for the dead-letter topic: key, headers, value.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub key: Vec<u8>,
    pub code: &'static str,
    pub stage: &'static str,
    pub value: Vec<u8>,
}

impl DeadLetter {
    pub fn headers(&self, source: &Source) -> [(&'static str, String); 6] {
        [
            (H_CODE, self.code.to_string()),
            (H_STAGE, self.stage.to_string()),
            (H_TOPIC, source.topic.clone()),
            (H_PARTITION, source.partition.to_string()),
            (H_OFFSET, source.offset.to_string()),
            (H_REPLAY, source.replay_count.to_string()),
        ]
    }
}

fn write_source(out: &mut Vec<u8>, s: &Source) {
    out.extend_from_slice(b"\"source\":{\"topic\":");
    write_str(out, &s.topic);
    out.extend_from_slice(format!(",\"partition\":{},\"offset\":{},\"key\":", s.partition, s.offset).as_bytes());
    match s.key.as_deref().map(std::str::from_utf8) {
        Some(Ok(k)) => write_str(out, k),
        Some(Err(_)) => write_str(
            out,
            &base64::engine::general_purpose::STANDARD.encode(s.key.as_deref().unwrap_or_default()),
        ),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(format!("}},\"replay_count\":{}", s.replay_count).as_bytes());
}

/// `stage` overrides each error's own stage (a store-level duplicate is found by the store).
fn write_errors(out: &mut Vec<u8>, errors: &[Issue], stage: Option<&str>) {
    out.push(b'[');
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"code\":\"");
        out.extend_from_slice(e.code.as_str().as_bytes());
        out.extend_from_slice(b"\",\"stage\":\"");
        out.extend_from_slice(stage.unwrap_or(e.code.stage().as_str()).as_bytes());
        out.extend_from_slice(b"\",\"field\":");
        write_str(out, &e.field);
        out.extend_from_slice(b",\"message\":");
        write_str(out, &e.message);
        out.push(b'}');
    }
    out.push(b']');
}

/// Where the `packages` array stands in `raw`: from its `[` at `packages_at` to just past its
/// `]`. Found from the start of its last package, so that only that package is scanned, not
/// the whole array (a manifest of 50 packages is ~24 KB); the whole array is scanned only when
/// the last package is unknown or not followed by the `]`.
pub fn packages_array(raw: &[u8], packages_at: usize, last_package_start: Option<usize>) -> Range<usize> {
    if let Some(last) = last_package_start.filter(|&l| l > packages_at) {
        let mut end = last + value_slice(raw, last).len();
        while raw.get(end).is_some_and(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            end += 1;
        }
        if raw.get(end) == Some(&b']') {
            return packages_at..end + 1;
        }
    }
    packages_at..packages_at + value_slice(raw, packages_at).len()
}

/// The manifest exactly as sent, with its `packages` array (at `array`, see
/// [`packages_array`]) cut down to the one package at `package_start`: a ready-to-replay
/// `manifest/v1`.
pub fn one_package_manifest(raw: &[u8], array: Range<usize>, package_start: usize) -> Vec<u8> {
    let package = value_slice(raw, package_start);
    let mut out = Vec::with_capacity(raw.len().min(array.start + package.len() + 64));
    out.extend_from_slice(&raw[..array.start]);
    out.push(b'[');
    out.extend_from_slice(package);
    out.push(b']');
    out.extend_from_slice(&raw[array.end.min(raw.len())..]);
    out
}

/// The dead letter of one rejected package. `stage` overrides the stage the error codes imply
/// (`Some("store")` for a duplicate found by the store).
#[allow(clippy::too_many_arguments)]
pub fn package_record(
    source: &Source,
    raw: &[u8],
    array: Range<usize>,
    package_index: u32,
    package_start: usize,
    tracking: Option<&str>,
    errors: &[Issue],
    stage: Option<&'static str>,
) -> DeadLetter {
    let primary = &errors[0];
    let stage = stage.unwrap_or(primary.code.stage().as_str());
    let mut v = Vec::with_capacity(512 + raw.len().min(4096));
    v.extend_from_slice(b"{\"schema\":\"dlq/v1\",\"code\":\"");
    v.extend_from_slice(primary.code.as_str().as_bytes());
    v.extend_from_slice(b"\",\"stage\":\"");
    v.extend_from_slice(stage.as_bytes());
    v.extend_from_slice(b"\",\"errors\":");
    write_errors(
        &mut v,
        errors,
        Some(stage).filter(|s| *s != primary.code.stage().as_str()),
    );
    v.push(b',');
    write_source(&mut v, source);
    v.extend_from_slice(format!(",\"package_index\":{package_index},\"tracking_number\":").as_bytes());
    match tracking {
        Some(t) => write_str(&mut v, t),
        None => v.extend_from_slice(b"null"),
    }
    v.extend_from_slice(b",\"manifest\":");
    v.extend_from_slice(&one_package_manifest(raw, array, package_start));
    v.push(b'}');
    let key = tracking
        .map(|t| t.as_bytes().to_vec())
        .or_else(|| source.key.clone())
        .unwrap_or_default();
    DeadLetter {
        key,
        code: primary.code.as_str(),
        stage,
        value: v,
    }
}

/// The dead letter of a message that could not be read as a manifest: its raw bytes.
pub fn message_record(source: &Source, raw: &[u8], issue: &Issue) -> DeadLetter {
    let mut v = Vec::with_capacity(256 + raw.len() * 2);
    v.extend_from_slice(b"{\"schema\":\"dlq/v1\",\"code\":\"");
    v.extend_from_slice(issue.code.as_str().as_bytes());
    v.extend_from_slice(b"\",\"stage\":\"");
    v.extend_from_slice(issue.code.stage().as_str().as_bytes());
    v.extend_from_slice(b"\",\"errors\":");
    write_errors(&mut v, std::slice::from_ref(issue), None);
    v.push(b',');
    write_source(&mut v, source);
    v.extend_from_slice(b",\"package_index\":null,\"tracking_number\":null,\"raw_base64\":");
    write_str(&mut v, &base64::engine::general_purpose::STANDARD.encode(raw));
    v.extend_from_slice(b",\"raw_text\":");
    match std::str::from_utf8(raw) {
        Ok(text) => write_str(&mut v, text),
        Err(_) => v.extend_from_slice(b"null"),
    }
    v.push(b'}');
    DeadLetter {
        key: source.key.clone().unwrap_or_default(),
        code: issue.code.as_str(),
        stage: issue.code.stage().as_str(),
        value: v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_package_manifest_keeps_the_header_as_sent() {
        let raw = br#"{"schema":"manifest/v1","packages":[{"a":1},{"b":[2,{"c":"]"}]}],"trip":{"x":1}}"#;
        let packages_at = raw.windows(2).position(|w| w == b":[").unwrap() + 1;
        let second = raw.windows(4).position(|w| w == b"{\"b\"").unwrap();
        let first = packages_at + 1;
        let array = packages_array(raw, packages_at, Some(second));
        assert_eq!(&raw[array.clone()], br#"[{"a":1},{"b":[2,{"c":"]"}]}]"#);
        let one = one_package_manifest(raw, array, second);
        assert_eq!(
            std::str::from_utf8(&one).unwrap(),
            r#"{"schema":"manifest/v1","packages":[{"b":[2,{"c":"]"}]}],"trip":{"x":1}}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&one).unwrap();
        assert_eq!(v["packages"].as_array().unwrap().len(), 1);
        let one = one_package_manifest(raw, packages_array(raw, packages_at, None), first);
        assert_eq!(
            std::str::from_utf8(&one).unwrap(),
            r#"{"schema":"manifest/v1","packages":[{"a":1}],"trip":{"x":1}}"#
        );
    }

    #[test]
    fn the_packages_array_found_from_its_last_package_is_the_whole_scans() {
        // (manifest, start of its last package): objects, scalars, strings holding brackets and
        // escaped quotes, whitespace around the elements, the array last or not.
        let cases: [(&str, &str); 6] = [
            (r#"{"packages":[{"a":1},{"b":2}]}"#, r#"{"b""#),
            (r#"{"packages": [ {"a":"]"} ,  {"b":"\"]"} ] ,"x":[1]}"#, r#"{"b""#),
            ("{\"packages\":[{\"a\":1},\n\t{\"b\":[[]]}\r\n]}", r#"{"b""#),
            (r#"{"packages":[1, 22 ],"trip":{}}"#, "22"),
            (r#"{"packages":["a]",  "b]" ]}"#, r#""b]""#),
            (r#"{"packages":[{"only":{"nested":[{}]}}]}"#, r#"{"only""#),
        ];
        for (text, last) in cases {
            let raw = text.as_bytes();
            let packages_at = text.find('[').unwrap();
            let last_start = text.rfind(last).unwrap();
            let whole = packages_array(raw, packages_at, None);
            assert_eq!(raw[whole.end - 1], b']', "{text}");
            assert_eq!(packages_array(raw, packages_at, Some(last_start)), whole, "{text}");
        }
    }
}
