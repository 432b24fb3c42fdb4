//! Operator-core benchmarks on realistic 50-package manifests (see `dutyflow_loadtest`).
//!
//!   CARGO_TARGET_DIR=/work/target-bench cargo bench -p dutyflow-benches --bench operators
//!
//! Throughput is reported in elements/s where one element is one package. Each benchmark rotates
//! over `ROTATION` pre-generated manifests so that no single input stays hot.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dutyflow_loadtest::manifests;
use dutyflow_operators::decode::Decoder;
use dutyflow_operators::outcome::Outcome;
use dutyflow_operators::risk::AccountHistory;
use dutyflow_operators::Operators;
use std::path::Path;
use std::time::Duration;

const PACKAGES: usize = 50;
const ROTATION: usize = 64;
const SEED: u64 = 2026;
const BAD_RATE: f64 = 0.02;

fn load_operators() -> Operators {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    Operators::load(&dir).unwrap_or_else(|e| panic!("cannot load {}: {e}", dir.display()))
}

fn inputs() -> Vec<Vec<u8>> {
    manifests(SEED, ROTATION, PACKAGES, BAD_RATE)
}

/// decode → validate → duty → risk → history → encode, one manifest per iteration.
fn core(c: &mut Criterion) {
    let ops = load_operators();
    let inputs = inputs();
    // Sanity check: the input is what we think it is.
    {
        let mut decoder = Decoder::default();
        let mut scratch = Vec::new();
        match ops.assess_message(&mut decoder, &inputs[0], &mut scratch) {
            Outcome::Manifest(m) => assert_eq!(m.packages.len(), PACKAGES),
            Outcome::Message(issue) => panic!("generated manifest rejected: {issue:?}"),
        }
    }
    let mut decoder = Decoder::default();
    let mut scratch = Vec::new();
    let mut history = AccountHistory::default();
    let mut out = Vec::with_capacity(1 << 20);
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(PACKAGES as u64));
    let mut i = 0usize;
    group.bench_function("manifest50", |b| {
        b.iter(|| {
            let raw = &inputs[i % ROTATION];
            i += 1;
            let mut outcome = ops.assess_message(&mut decoder, raw, &mut scratch);
            ops.apply_history(&mut history, &mut outcome);
            out.clear();
            ops.encode_lines(&outcome, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

/// simd-json parsing and the raw manifest view only.
fn decode(c: &mut Criterion) {
    let inputs = inputs();
    let mut decoder = Decoder::default();
    let mut scratch = Vec::new();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(PACKAGES as u64));
    let mut i = 0usize;
    group.bench_function("manifest50", |b| {
        b.iter(|| {
            let raw = &inputs[i % ROTATION];
            i += 1;
            let manifest = decoder.decode(black_box(raw), &mut scratch);
            black_box(manifest.map(|m| m.packages.len()).unwrap_or(0))
        })
    });
    group.finish();
}

/// Writing `assessment/v1` lines from outcomes computed beforehand.
fn encode(c: &mut Criterion) {
    let ops = load_operators();
    let inputs = inputs();
    let mut decoder = Decoder::default();
    let mut history = AccountHistory::default();
    let mut scratches: Vec<Vec<u8>> = vec![Vec::new(); ROTATION];
    let outcomes: Vec<Outcome<'_>> = inputs
        .iter()
        .zip(scratches.iter_mut())
        .map(|(raw, scratch)| {
            let mut outcome = ops.assess_message(&mut decoder, raw, scratch);
            ops.apply_history(&mut history, &mut outcome);
            outcome
        })
        .collect();
    let mut out = Vec::with_capacity(1 << 20);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(PACKAGES as u64));
    let mut i = 0usize;
    group.bench_function("manifest50", |b| {
        b.iter(|| {
            let outcome = &outcomes[i % ROTATION];
            i += 1;
            out.clear();
            ops.encode_lines(black_box(outcome), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group! {
    name = operator_benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    targets = core, decode, encode
}
criterion_main!(operator_benches);
