#!/usr/bin/env bash
# Installs Tansu, a Kafka-compatible broker in its own process that keeps its data on disk
# (SQLite). Only the 10-million-package backlog load test (loadtest/backlog.sh) needs it: the
# embedded mock broker keeps ~5 MB per partition. The build takes ~11 minutes on 2 cores.
set -euo pipefail
VERSION=0.6.0
if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "$VERSION"; then
  exit 0
fi
cargo install tansu --version "$VERSION" --locked --features dynostore,libsql
