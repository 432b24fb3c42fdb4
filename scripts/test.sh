#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine, then runs every
# test of the workspace (unit, property, corpus, domain rules, file mode, and the streaming
# service end to end over a real Kafka-protocol broker, with crash tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
