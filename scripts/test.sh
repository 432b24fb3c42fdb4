#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine, then runs every
# test of the workspace (unit, property, corpus, domain rules, file mode, the streaming service
# end to end over a real Kafka-protocol broker with crash, rebalance and shutdown tests, the
# store on SQLite and PostgreSQL, the CLI verbs, and the operations checks), and ends with one
# summary line over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
echo
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
