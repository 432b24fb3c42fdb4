#!/usr/bin/env bash
# One-time setup on a fresh Debian machine: the C toolchain that librdkafka and SQLite are
# built with (both are compiled from source by their crates). Safe to run again.
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(build-essential)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
# The PostgreSQL server the store tests start (scripts/pg-test-server.sh).
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# The operations checks (tests/ops.rs: scripts/check-ops.sh, scripts/prometheus-smoke.sh):
# promtool and prometheus, docker-compose (its `config` needs no Docker engine), curl, and
# PyYAML for Debian's python3. Without recommends: no Docker engine, no node exporter.
ops=()
command -v promtool >/dev/null || ops+=(prometheus)
command -v prometheus >/dev/null || ops+=(prometheus)
command -v docker-compose >/dev/null || ops+=(docker-compose)
command -v curl >/dev/null || ops+=(curl)
dpkg -s python3-yaml >/dev/null 2>&1 || ops+=(python3-yaml)
if [ ${#ops[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${ops[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo is missing; install Rust from rustup first" >&2; exit 1; }
