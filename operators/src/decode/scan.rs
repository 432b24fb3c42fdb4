//! A strict one-pass scanner for the common shape of a message, writing the same tape as
//! simd-json (same nodes in the same order, and the byte offset of every node).
//!
//! It accepts only a subset of JSON: an object at the root, strings without escapes, plain
//! non-negative numbers without exponent, and at most [`MAX_DEPTH`] levels of nesting. On
//! anything else, valid or not, it gives up and the decoder runs simd-json, which then
//! decides and words every error. So the scanner never has to be lenient or explain
//! anything: it must only never accept what simd-json would refuse, and it checks the full
//! grammar (and UTF-8) for that.
//!
//! Strings are not copied: each is a slice of the message.

use simd_json::{Node, StaticNode};

/// Deepest nesting the scanner follows; deeper messages go to simd-json.
const MAX_DEPTH: usize = 64;
/// Longest number the scanner reads; longer ones go to simd-json (which may refuse them).
const MAX_NUMBER_LEN: usize = 18;

/// What comes next in the grammar.
enum Next {
    /// A value (after `:`, `[` or `,` in an array).
    Value,
    /// A key (after `{` with members, or `,` in an object).
    Key,
    /// A `,` or the close of the innermost container.
    AfterValue,
}

/// An open object or array: its node and its number of members or elements so far.
#[derive(Clone, Copy)]
pub(super) struct Open {
    node: u32,
    len: u32,
    object: bool,
}

/// Fills `nodes` and `positions` for `raw`. Returns `false` when `raw` is outside the subset
/// this scanner reads (the buffers then hold garbage and must not be used).
pub(super) fn scan<'a>(raw: &'a [u8], nodes: &mut Vec<Node<'a>>, positions: &mut Vec<u32>, open: &mut Vec<Open>) -> bool {
    let Ok(text) = std::str::from_utf8(raw) else {
        return false;
    };
    if raw.len() >= u32::MAX as usize {
        return false;
    }
    nodes.clear();
    positions.clear();
    open.clear();
    let b = raw;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return false;
    }
    let mut next = Next::Value;
    loop {
        match next {
            Next::Value => match b.get(i) {
                Some(b'{') | Some(b'[') => {
                    if open.len() >= MAX_DEPTH {
                        return false;
                    }
                    let object = b[i] == b'{';
                    open.push(Open {
                        node: nodes.len() as u32,
                        len: 0,
                        object,
                    });
                    nodes.push(Node::Static(StaticNode::Null));
                    positions.push(i as u32);
                    i = skip_ws(b, i + 1);
                    let close = if object { b'}' } else { b']' };
                    if b.get(i) == Some(&close) {
                        next = Next::AfterValue;
                    } else if object {
                        next = Next::Key;
                    } else if let Some(top) = open.last_mut() {
                        top.len += 1;
                    }
                }
                Some(b'"') => {
                    let Some(end) = string_end(b, i + 1) else {
                        return false;
                    };
                    nodes.push(Node::String(&text[i + 1..end]));
                    positions.push(i as u32);
                    i = end + 1;
                    next = Next::AfterValue;
                }
                Some(b'0'..=b'9') => {
                    let Some(end) = number_end(b, i) else {
                        return false;
                    };
                    // Numbers are read from their text (see `Doc::number_text`): the node
                    // only says "a number".
                    nodes.push(Node::Static(StaticNode::U64(0)));
                    positions.push(i as u32);
                    i = end;
                    next = Next::AfterValue;
                }
                Some(&c @ (b't' | b'f' | b'n')) => {
                    let (word, node): (&[u8], _) = match c {
                        b't' => (b"true", StaticNode::Bool(true)),
                        b'f' => (b"false", StaticNode::Bool(false)),
                        _ => (b"null", StaticNode::Null),
                    };
                    if !b[i..].starts_with(word) {
                        return false;
                    }
                    nodes.push(Node::Static(node));
                    positions.push(i as u32);
                    i += word.len();
                    next = Next::AfterValue;
                }
                _ => return false,
            },
            Next::Key => {
                if b.get(i) != Some(&b'"') {
                    return false;
                }
                let Some(end) = string_end(b, i + 1) else {
                    return false;
                };
                nodes.push(Node::String(&text[i + 1..end]));
                positions.push(i as u32);
                i = skip_ws(b, end + 1);
                if b.get(i) != Some(&b':') {
                    return false;
                }
                i = skip_ws(b, i + 1);
                if let Some(top) = open.last_mut() {
                    top.len += 1;
                }
                next = Next::Value;
            }
            Next::AfterValue => {
                i = skip_ws(b, i);
                let Some(top) = open.last_mut() else {
                    // The root is closed: only whitespace may follow.
                    return i == b.len();
                };
                match b.get(i) {
                    Some(b',') => {
                        i = skip_ws(b, i + 1);
                        if top.object {
                            next = Next::Key;
                        } else {
                            top.len += 1;
                            next = Next::Value;
                        }
                    }
                    Some(b'}') if top.object => close(nodes, open, &mut i),
                    Some(b']') if !top.object => close(nodes, open, &mut i),
                    _ => return false,
                }
            }
        }
    }
}

/// Closes the innermost container at `*i`, filling in its node.
#[inline]
fn close(nodes: &mut [Node<'_>], open: &mut Vec<Open>, i: &mut usize) {
    if let Some(top) = open.pop() {
        let at = top.node as usize;
        let count = nodes.len() - at - 1;
        let len = top.len as usize;
        nodes[at] = if top.object {
            Node::Object { len, count }
        } else {
            Node::Array { len, count }
        };
    }
    *i += 1;
}

#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
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

/// The end of a plain number starting at `i` (`0`, `12`, `19.99`); `None` for anything else
/// (leading zeros, a bare point, an exponent, too many digits).
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
