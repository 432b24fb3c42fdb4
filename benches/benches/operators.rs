//! Operator-core benchmarks on realistic 50-package manifests (see `dutyflow_loadtest`).
//!
//!   CARGO_TARGET_DIR=/work/target-bench cargo bench -p dutyflow-benches --bench operators
//!
//! Throughput is reported in elements/s where one element is one package. Each benchmark rotates
//! over `ROTATION` pre-generated manifests so that no single input stays hot.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dutyflow_loadtest::manifests;
use dutyflow_operators::decode::{Decoder, RawManifest};
use dutyflow_operators::model::{Header, Package};
use dutyflow_operators::outcome::Outcome;
use dutyflow_operators::risk::AccountHistory;
use dutyflow_operators::Operators;
use dutyflow_operators::{duty, validate};
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
    per_manifest(c, "core", |k| {
        let mut outcome = ops.assess_message(&mut decoder, &inputs[k], &mut scratch);
        ops.apply_history(&mut history, &mut outcome);
        out.clear();
        ops.encode_lines(&outcome, &mut out);
        out.len()
    });
}

/// Benchmarks `step(k)` as `name/manifest50`, throughput in packages, `k` going round the
/// `ROTATION` inputs (or what was made of them) one call after another.
fn per_manifest(c: &mut Criterion, name: &str, mut step: impl FnMut(usize) -> usize) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(PACKAGES as u64));
    let mut i = 0usize;
    group.bench_function("manifest50", |b| {
        b.iter(|| {
            let k = i % ROTATION;
            i += 1;
            black_box(step(black_box(k)))
        })
    });
    group.finish();
}

/// simd-json parsing and the raw manifest view only.
fn decode(c: &mut Criterion) {
    let inputs = inputs();
    let mut decoder = Decoder::default();
    let mut scratch = Vec::new();
    per_manifest(c, "decode", |k| {
        let manifest = decoder.decode(&inputs[k], &mut scratch);
        manifest.map(|m| m.packages.len()).unwrap_or(0)
    });
}

/// The floor the decided parser sets: the copy simd-json rewrites and its two stages
/// (`fill_tape`), nothing of ours. Run in the same process as `core`, so that the two compare as
/// a ratio: whatever the machine, the core cannot run faster than this.
fn parser_floor(c: &mut Criterion) {
    let inputs = inputs();
    let mut buffers = simd_json::Buffers::new(64 * 1024);
    let mut scratch: Vec<u8> = Vec::new();
    let mut kept: simd_json::Tape<'static> = simd_json::Tape(Vec::new());
    let mut nodes = 0usize;
    per_manifest(c, "simd_json_floor", |k| {
        scratch.clear();
        scratch.extend_from_slice(&inputs[k]);
        // The tape's allocation is reused, as the decoder reuses it.
        let mut tape = std::mem::replace(&mut kept, simd_json::Tape(Vec::new())).reset();
        simd_json::fill_tape(scratch.as_mut_slice(), &mut buffers, &mut tape).expect("generated manifests parse");
        nodes += tape.0.len();
        kept = tape.reset();
        nodes
    });
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
    per_manifest(c, "encode", |k| {
        out.clear();
        ops.encode_lines(&outcomes[k], &mut out);
        out.len()
    });
}

/// Each input decoded once, kept for the per-operator benches.
fn decoded<'a>(inputs: &'a [Vec<u8>], scratches: &'a mut [Vec<u8>]) -> Vec<RawManifest<'a>> {
    let mut decoder = Decoder::default();
    inputs
        .iter()
        .zip(scratches.iter_mut())
        .map(|(raw, scratch)| decoder.decode(raw, scratch).expect("generated manifests decode"))
        .collect()
}

fn validated<'a>(ops: &Operators, m: &RawManifest<'a>) -> (Header<'a>, Vec<Package<'a>>) {
    let header = validate::header(ops, m);
    let mut packages: Vec<Package<'a>> = m
        .packages
        .iter()
        .enumerate()
        .map(|(i, raw)| validate::package(ops, &header, i, raw, &m.items))
        .collect();
    validate::mark_duplicates(&mut packages);
    (header, packages)
}

/// Each operator alone, on manifests decoded (and, for duty and risk, validated) beforehand:
/// validation (header, packages, duplicates), duty assessment, and static risk scoring.
fn operators(c: &mut Criterion) {
    let ops = load_operators();
    let inputs = inputs();
    let mut scratches: Vec<Vec<u8>> = vec![Vec::new(); ROTATION];
    let manifests = decoded(&inputs, &mut scratches);
    let checked: Vec<(Header<'_>, Vec<Package<'_>>)> = manifests.iter().map(|m| validated(&ops, m)).collect();
    let duties: Vec<Vec<Option<duty::Duty<'_>>>> = checked
        .iter()
        .map(|(h, ps)| {
            ps.iter()
                .map(|p| p.accepted().then(|| duty::assess(&ops.rates.regimes, h, p)).flatten())
                .collect()
        })
        .collect();
    let mut group = c.benchmark_group("operator");
    group.throughput(Throughput::Elements(PACKAGES as u64));
    let mut i = 0usize;
    group.bench_function("validate/manifest50", |b| {
        b.iter(|| {
            let m = &manifests[i % ROTATION];
            i += 1;
            black_box(validated(&ops, black_box(m)).1.len())
        })
    });
    group.bench_function("duty/manifest50", |b| {
        b.iter(|| {
            let (h, ps) = &checked[i % ROTATION];
            i += 1;
            let assessed = ps
                .iter()
                .filter(|p| p.accepted())
                .filter_map(|p| duty::assess(&ops.rates.regimes, h, black_box(p)))
                .count();
            black_box(assessed)
        })
    });
    group.bench_function("risk/manifest50", |b| {
        b.iter(|| {
            let k = i % ROTATION;
            i += 1;
            let (h, ps) = &checked[k];
            let mut points = 0u32;
            for (p, d) in ps.iter().zip(&duties[k]) {
                if let Some(d) = d {
                    points += u32::from(ops.risk.score_static(&ops.rates, h, black_box(p), d, 1).score());
                }
            }
            black_box(points)
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
    targets = core, parser_floor, decode, operators, encode
}
criterion_main!(operator_benches);
