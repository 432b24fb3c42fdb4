#!/usr/bin/env bash
# The demo: the whole pipeline on an embedded Kafka-protocol broker and a fresh SQLite store
# (dutyflow-demo.db), fed by the built-in generator of realistic manifests (2% bad on purpose),
# then a summary: packages in, accepted, rejected by code, throughput, totals per carrier.
# Extra arguments go to `dutyflow demo` (see `--help`: --packages, --duration, --rate, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --quiet --bin dutyflow
exec target/release/dutyflow demo "$@"
