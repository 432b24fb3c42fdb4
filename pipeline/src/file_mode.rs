//! `dutyflow assess [FILE…]`: the operators over JSON Lines, without Kafka.
//!
//! Input is read in chunks; each chunk is decoded, validated and assessed on all cores, account
//! history is applied in input order, and the assessments are encoded in parallel and written
//! in input order. Memory is bounded by the chunk size, whatever the input size.

use anyhow::{Context, Result};
use dutyflow_operators::decode::Decoder;
use dutyflow_operators::outcome::Outcome;
use dutyflow_operators::risk::AccountHistory;
use dutyflow_operators::Operators;
use rayon::prelude::*;
use std::io::{BufRead, BufReader, Read, Write};

/// Messages per parallel chunk.
const CHUNK_MESSAGES: usize = 2048;

/// Counts of what was assessed, for the summary on stderr.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub messages: u64,
    pub accepted: u64,
    pub rejected: u64,
}

/// Assesses every input (files, or stdin for `-`/none) and writes assessments to `out`.
pub fn run(ops: &Operators, inputs: &[String], out: &mut dyn Write) -> Result<Counts> {
    let mut history = AccountHistory::default();
    let mut counts = Counts::default();
    let stdin = ["-".to_string()];
    let inputs = if inputs.is_empty() { &stdin[..] } else { inputs };
    for input in inputs {
        let reader: Box<dyn Read> = if input == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(
                std::fs::File::open(input)
                    .with_context(|| format!("cannot open {input}; check the path and permissions"))?,
            )
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let mut first = Vec::new();
        // A file whose first non-empty line is `{` alone holds one pretty-printed document.
        loop {
            first.clear();
            if reader
                .read_until(b'\n', &mut first)
                .with_context(|| format!("cannot read {input}"))?
                == 0
            {
                break;
            }
            if !first.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        if first.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if trim(&first) == b"{" {
            let mut doc = first.clone();
            reader
                .read_to_end(&mut doc)
                .with_context(|| format!("cannot read {input}"))?;
            assess_chunk(ops, &mut history, vec![doc], out, &mut counts)?;
            continue;
        }
        let mut chunk: Vec<Vec<u8>> = vec![strip_newline(first.clone())];
        loop {
            let mut line = Vec::new();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("cannot read {input}"))?;
            if n == 0 {
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            chunk.push(strip_newline(line));
            if chunk.len() == CHUNK_MESSAGES {
                assess_chunk(ops, &mut history, std::mem::take(&mut chunk), out, &mut counts)?;
            }
        }
        assess_chunk(ops, &mut history, chunk, out, &mut counts)?;
    }
    out.flush().context("cannot write the assessments to stdout")?;
    Ok(counts)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn strip_newline(mut line: Vec<u8>) -> Vec<u8> {
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    line
}

fn assess_chunk(
    ops: &Operators,
    history: &mut AccountHistory,
    messages: Vec<Vec<u8>>,
    out: &mut dyn Write,
    counts: &mut Counts,
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut scratch: Vec<Vec<u8>> = messages.iter().map(|_| Vec::new()).collect();
    let mut outcomes: Vec<Outcome<'_>> = messages
        .par_iter()
        .zip(scratch.par_iter_mut())
        .map_init(Decoder::default, |decoder, (raw, scratch)| {
            ops.assess_message(decoder, raw, scratch)
        })
        .collect();
    for outcome in &mut outcomes {
        ops.apply_history(history, outcome);
        counts.messages += 1;
        match outcome {
            Outcome::Message(_) => counts.rejected += 1,
            Outcome::Manifest(m) => {
                let accepted = m.packages.iter().filter(|p| p.accepted()).count() as u64;
                counts.accepted += accepted;
                counts.rejected += m.packages.len() as u64 - accepted;
            }
        }
    }
    let encoded: Vec<Vec<u8>> = outcomes
        .par_iter()
        .map(|o| {
            let mut buf = Vec::with_capacity(o.len() * 700);
            ops.encode_lines(o, &mut buf);
            buf
        })
        .collect();
    for buf in encoded {
        out.write_all(&buf).context("cannot write the assessments to stdout")?;
    }
    Ok(())
}
