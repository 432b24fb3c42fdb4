#!/usr/bin/env bash
# The backlog test: `dutyflow run` starting with a backlog of PACKAGES (10 million) already in the
# broker, drained flat out; reports the drain rate and the service's memory over the drain.
#
#   scripts/install-tansu.sh        # once: the broker, ~11 minutes to build
#   CARGO_TARGET_DIR=/work/target-bench cargo build --release -p dutyflow -p dutyflow-loadtest
#   BIN_DIR=/work/target-bench/release loadtest/backlog.sh [OUT_DIR]
#
# The embedded mock broker keeps ~5 MB per partition, far from 10 million packages (~4.8 GB of
# JSON), so this test runs on Tansu, a Kafka-compatible broker in its own process. Its storage
# is STORAGE: by default `memory://tansu/` (the backlog sits in the broker's memory, not the
# service's); Tansu 0.6's `sqlite://` engine took ~1,200 packages/s of produce on this machine,
# hours for 10 million. Steps:
#   1. start Tansu and create the topics (PARTITIONS each);
#   2. produce PACKAGES packages flat out with no service running (`dutyflow-loadtest run`,
#      no backlog bound), which also reads the outputs and samples the service once it runs;
#   3. once everything is produced, start `dutyflow run` (SQLite store; or, with PIPELINE=null,
#      the null pipeline) and let it drain.
# The report (OUT_DIR/backlog.json) has the drain's packages/s (steady window: 5 % to 95 % of
# the packages done) and the service's RSS every second (service.rss_series_mib).
#
# Environment: BIN_DIR, TANSU (tansu on PATH), STORAGE (memory://tansu/), PACKAGES (10000000),
# PARTITIONS (16), PORT (19092), SEED (2030), FETCH_WAIT_MS (10, as in run.sh),
# PIPELINE (service; `null` drains the backlog with the null pipeline instead, copying it to
# null.out: the most this broker lets any consumer drain, to compare the service's rate with),
# METRICS_LISTEN (127.0.0.1:19465; the service's /metrics, scraped once the backlog is drained
# into OUT_DIR/service.prom, and loadtest/stages.py prints where the drain's time went),
# DUTYFLOW_* (passed to the service).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$here/target}/release}
TANSU=${TANSU:-tansu}
PACKAGES=${PACKAGES:-10000000}
PARTITIONS=${PARTITIONS:-16}
PORT=${PORT:-19092}
SEED=${SEED:-2030}
STORAGE=${STORAGE:-memory://tansu/}
FETCH_WAIT_MS=${FETCH_WAIT_MS:-10}
OUT=${1:-/tmp/dutyflow-backlog-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
source "$here/loadtest/common.sh"
command -v "$TANSU" >/dev/null || { echo "backlog.sh: $TANSU not found; run scripts/install-tansu.sh" >&2; exit 2; }
trap stop_started EXIT

brokers=127.0.0.1:$PORT
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); output in $OUT"
rm -f "$OUT"/tansu.db* "$OUT"/store.db* "$OUT"/service.pid
(cd "$OUT" && exec "$TANSU" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
    --storage-engine "$STORAGE" >"$OUT/tansu.log" 2>&1) &
tansu_pid=$!
started+=("$tansu_pid")
for i in $(seq 100); do
    "$loadtest" create-topics --brokers "$brokers" --partitions "$PARTITIONS" manifests assessments manifests.dlq null.out \
        >"$OUT/topics.log" 2>&1 && break
    [ "$i" = 100 ] && { echo "backlog.sh: Tansu did not come up:" >&2; cat "$OUT/topics.log" "$OUT/tansu.log" >&2; exit 1; }
    sleep 0.3
done
echo "== Tansu at $brokers (pid $tansu_pid, storage $STORAGE): $(tr '\n' ' ' <"$OUT/topics.log")"

PIPELINE=${PIPELINE:-service}
case "$PIPELINE" in
    service) outputs=(--output-topic assessments --dlq-topic manifests.dlq) ;;
    null) outputs=(--output-topic null.out --dlq-topic "") ;;
    *) echo "backlog.sh: PIPELINE is service or null, not $PIPELINE" >&2; exit 2 ;;
esac
"$loadtest" run --brokers "$brokers" --broker-pid "$tansu_pid" --max-backlog 0 --packages "$PACKAGES" --seed "$SEED" \
    "${outputs[@]}" --idle-timeout 1800 --service-pid-file "$OUT/service.pid" --label backlog --report "$OUT/backlog.json" \
    2>"$OUT/loadtest.progress" &
loadtest_pid=$!
started+=("$loadtest_pid")
produced() { tr '\r' '\n' <"$OUT/loadtest.progress" | grep -o 'produced *[0-9]*' | tail -1 | grep -o '[0-9]*$' || echo 0; }
t0=$(date +%s)
until [ "$(produced)" -ge "$PACKAGES" ]; do
    kill -0 "$loadtest_pid" 2>/dev/null || { echo "backlog.sh: the load test stopped while producing" >&2; tail -c 2000 "$OUT/loadtest.progress" >&2; exit 1; }
    sleep 2
done
echo "== $PACKAGES packages produced in $(($(date +%s) - t0)) s; starting the $PIPELINE pipeline"

if [ "$PIPELINE" = null ]; then
    "$loadtest" null-pipeline --brokers "$brokers" --input manifests --output null.out \
        --fetch-wait-max-ms "$FETCH_WAIT_MS" >"$OUT/null.log" 2>&1 &
else
    DUTYFLOW_KAFKA_BROKERS=$brokers DUTYFLOW_KAFKA_GROUP_ID=dutyflow-backlog \
        DUTYFLOW_STORE_URL="sqlite://$OUT/store.db" DUTYFLOW_METRICS_LISTEN="${METRICS_LISTEN:-127.0.0.1:19465}" \
        DUTYFLOW_CONFIG_DIR=${DUTYFLOW_CONFIG_DIR:-$here/config} DUTYFLOW_RDKAFKA_FETCH_WAIT_MAX_MS=$FETCH_WAIT_MS \
        "$dutyflow" run >"$OUT/service.log" 2>&1 &
fi
service_pid=$!
started+=("$service_pid")
# Fail now, not after the load test's idle timeout, if it does not start (a port in use, a bad
# setting): the service must join the group, the null pipeline stay up.
for i in $(seq 600); do
    kill -0 "$service_pid" 2>/dev/null || {
        echo "backlog.sh: the $PIPELINE pipeline stopped at start-up:" >&2
        tail -n 20 "$OUT/service.log" "$OUT/null.log" >&2 2>/dev/null
        exit 1
    }
    if [ "$PIPELINE" = null ]; then
        [ "$i" -ge 20 ] && break
    else
        grep -q "partitions assigned" "$OUT/service.log" 2>/dev/null && break
    fi
    [ "$i" = 600 ] && { echo "backlog.sh: the service did not join the group in 60 s" >&2; exit 1; }
    sleep 0.1
done
echo "$service_pid" >"$OUT/service.pid"
status=0
wait "$loadtest_pid" || status=$?
tr '\r' '\n' <"$OUT/loadtest.progress" | tail -3
if [ "$PIPELINE" = null ]; then
    : # no metrics
elif curl -fsS --max-time 10 "http://${METRICS_LISTEN:-127.0.0.1:19465}/metrics" >"$OUT/service.prom"; then
    echo "== where the drain's time went (per batch or store commit)"
    python3 "$here/loadtest/stages.py" /dev/null "$OUT/service.prom" | tee "$OUT/service.stages" || true
else
    echo "backlog.sh: cannot scrape the service's metrics" >&2
    rm -f "$OUT/service.prom"
fi
jq '{complete, produced: .produced.packages, done: .done.packages, missing: .done.missing_packages,
     drain_packages_per_s: .throughput.steady_packages_per_s, rss_max_mib: .service.rss_max_mib,
     rss_steady_halves_mib: [.service.rss_steady_first_half_max_mib, .service.rss_steady_second_half_max_mib],
     service_cpu_cores: .service.cpu_cores_steady, broker_cpu_cores: .broker_cpu_cores_steady}' "$OUT/backlog.json" \
    | tee "$OUT/summary.json"
exit "$status"
