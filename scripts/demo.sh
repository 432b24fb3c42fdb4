#!/usr/bin/env bash
# Runs dutyflow on the sample manifests (file mode): one assessment per package on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release --quiet --bin dutyflow -- assess tests/fixtures/examples/manifest-valid.jsonl tests/fixtures/examples/manifest-bad-packages.jsonl tests/fixtures/examples/not-json.txt
