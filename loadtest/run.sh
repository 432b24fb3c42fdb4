#!/usr/bin/env bash
# End-to-end load test of dutyflow on a local dev broker (librdkafka's mock cluster).
#
#   CARGO_TARGET_DIR=/work/target-bench cargo build --release -p dutyflow -p dutyflow-loadtest
#   BIN_DIR=/work/target-bench/release loadtest/run.sh [OUT_DIR]
#
# Steps, all on one broker in one run:
#   1. the null pipeline (consume → copy → produce: the ceiling), flat out, then at half its rate;
#      with FAN_OUT=1, also the null pipeline publishing a record per package, flat out;
#   2. `dutyflow run` with the exactly-once SQLite store, flat out (its maximum rate);
#   3. the same service at half that rate (latency);
# then prints a summary (real/null ratio, p99 at half rate, service RSS, CPU per package: each
# process's cores in the flat-out step over its rate, steadier from run to run than the rate
# itself, which also follows what else the machine does) and writes
# OUT_DIR/summary.json next to each step's report. Every process it started is stopped on exit.
#
# "Flat out" keeps at most MAX_BACKLOG packages produced and not yet answered: the mock broker
# keeps only ~5 MB per partition, so a producer running far ahead would lose data: 100,000
# packages are 2,000 manifests of ~24 KB, ~3 MB per partition of 16 (200,000 lost input once,
# which the service reported as skipped offsets).
#
# Latency: librdkafka's mock broker holds a fetch that finds no data for the consumer's whole
# fetch.wait.max.ms (default 500 ms) even when data arrives meanwhile; a real broker answers as
# soon as data is there. So both pipelines' consumers run with fetch.wait.max.ms = FETCH_WAIT_MS
# (10 ms); with the default, the mock broker alone adds up to 500 ms to every latency.
#
# Where the service's time went: its /metrics (at METRICS_LISTEN) is scraped after each of its
# two steps into OUT_DIR/service-{max,half}.prom, and loadtest/stages.py prints, per step, the
# batches' stage durations and sizes (also in OUT_DIR/service-{max,half}.stages).
#
# Environment: BIN_DIR (release binaries), PARTITIONS (16), NULL_PACKAGES (2000000),
# SERVICE_PACKAGES (2000000), HALF_SECONDS (30), SERVICE_HALF_RATE (half the measured maximum), MAX_BACKLOG (100000), SEED (2026), FETCH_WAIT_MS (10),
# METRICS_LISTEN (127.0.0.1:19464), FAN_OUT (1: also run the null pipeline with a record per
# package, `--fan-out`, flat out, on topics of its own: the transport's ceiling for the
# service's output shape; the summary then gives ratio_service_to_fan_out),
# KEEP_STORE (1: keep OUT_DIR/store.db), DUTYFLOW_* (passed to the service, e.g.
# DUTYFLOW_PIPELINE_BATCH_MAX_MESSAGES).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$here/target}/release}
PARTITIONS=${PARTITIONS:-16}
NULL_PACKAGES=${NULL_PACKAGES:-2000000}
SERVICE_PACKAGES=${SERVICE_PACKAGES:-2000000}
HALF_SECONDS=${HALF_SECONDS:-30}
MAX_BACKLOG=${MAX_BACKLOG:-100000}
SEED=${SEED:-2026}
FETCH_WAIT_MS=${FETCH_WAIT_MS:-10}
METRICS_LISTEN=${METRICS_LISTEN:-127.0.0.1:19464}
OUT=${1:-/tmp/dutyflow-loadtest-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

source "$here/loadtest/common.sh"
cleanup() {
    stop_started
    [ "${KEEP_STORE:-0}" = 1 ] || rm -f "$OUT"/store.db "$OUT"/store.db-wal "$OUT"/store.db-shm
}
trap cleanup EXIT

wait_for() { # wait_for FILE PATTERN SECONDS
    local i
    for i in $(seq $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "run.sh: timed out waiting for \"$2\" in $1" >&2
    return 1
}

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); output in $OUT"
echo "== partitions $PARTITIONS, null $NULL_PACKAGES packages, service $SERVICE_PACKAGES packages, half-rate runs ${HALF_SECONDS} s, max backlog $MAX_BACKLOG, fetch.wait.max.ms $FETCH_WAIT_MS"

"$dutyflow" dev-broker --partitions "$PARTITIONS" \
    --topics manifests,assessments,manifests.dlq,null.in,null.out,null.fin,null.fan >"$OUT/broker.addr" 2>"$OUT/broker.log" &
broker_pid=$!
started+=("$broker_pid")
wait_for "$OUT/broker.addr" . 20
brokers=$(head -1 "$OUT/broker.addr")
echo "== dev broker at $brokers (pid $broker_pid, $PARTITIONS partitions per topic)"

common=(--brokers "$brokers" --broker-pid "$broker_pid" --max-backlog "$MAX_BACKLOG")
rate_of() { jq -r '.throughput.steady_packages_per_s // .throughput.overall_packages_per_s' "$1"; }

# 1. The null pipeline.
"$loadtest" null-pipeline --brokers "$brokers" --input null.in --output null.out \
    --fetch-wait-max-ms "$FETCH_WAIT_MS" >"$OUT/null.log" 2>&1 &
null_pid=$!
started+=("$null_pid")
sleep 4 # group join
"$loadtest" run "${common[@]}" --input-topic null.in --output-topic null.out --dlq-topic "" \
    --packages "$NULL_PACKAGES" --seed "$SEED" --service-pid "$null_pid" --label null-max --report "$OUT/null-max.json"
null_rate=$(rate_of "$OUT/null-max.json")
null_half=$(jq -n "$null_rate / 2 | floor")
"$loadtest" run "${common[@]}" --input-topic null.in --output-topic null.out --dlq-topic "" \
    --rate "$null_half" --duration "$HALF_SECONDS" --seed $((SEED + 1)) --service-pid "$null_pid" \
    --label null-half --report "$OUT/null-half.json"
stop "$null_pid"

# 1b. FAN_OUT=1: the null pipeline publishing a record per package (the service's output
# shape, contract §2), flat out: what the transport alone gives for that shape.
rm -f "$OUT/null-fan-out.json"
if [ "${FAN_OUT:-0}" = 1 ]; then
    "$loadtest" null-pipeline --brokers "$brokers" --input null.fin --output null.fan --group dutyflow-null-fan \
        --fetch-wait-max-ms "$FETCH_WAIT_MS" --fan-out >"$OUT/null-fan.log" 2>&1 &
    fan_pid=$!
    started+=("$fan_pid")
    sleep 4 # group join
    "$loadtest" run "${common[@]}" --input-topic null.fin --output-topic null.fan --dlq-topic "" \
        --packages "$NULL_PACKAGES" --seed $((SEED + 4)) --service-pid "$fan_pid" --label null-fan-out \
        --report "$OUT/null-fan-out.json"
    stop "$fan_pid"
fi

# 2. The service, flat out.
DUTYFLOW_KAFKA_BROKERS=$brokers DUTYFLOW_KAFKA_GROUP_ID=dutyflow-loadtest \
    DUTYFLOW_STORE_URL="sqlite://$OUT/store.db" DUTYFLOW_METRICS_LISTEN="$METRICS_LISTEN" \
    DUTYFLOW_CONFIG_DIR=${DUTYFLOW_CONFIG_DIR:-$here/config} DUTYFLOW_RDKAFKA_FETCH_WAIT_MAX_MS=$FETCH_WAIT_MS \
    "$dutyflow" run >"$OUT/service.log" 2>&1 &
service_pid=$!
started+=("$service_pid")
wait_for "$OUT/service.log" "partitions assigned" 60
echo "== dutyflow run (pid $service_pid) joined the group"
"$loadtest" run "${common[@]}" --packages "$SERVICE_PACKAGES" --seed $((SEED + 2)) --service-pid "$service_pid" \
    --label service-max --report "$OUT/service-max.json"
service_rate=$(rate_of "$OUT/service-max.json")
stages() { # stages STEP BEFORE: scrape the service's metrics after STEP, print what STEP added
    if ! curl -fsS --max-time 10 "http://$METRICS_LISTEN/metrics" >"$OUT/service-$1.prom"; then
        echo "run.sh: cannot scrape http://$METRICS_LISTEN/metrics" >&2
        rm -f "$OUT/service-$1.prom"
        return 0
    fi
    [ -e "$2" ] || { echo "run.sh: no earlier scrape $2; skipping the breakdown" >&2; return 0; }
    python3 "$here/loadtest/stages.py" "$2" "$OUT/service-$1.prom" | tee "$OUT/service-$1.stages" || true
}
echo "== where the time went, flat out (per batch or store commit)"
stages max /dev/null

# 3. The service at half its maximum rate.
# SERVICE_HALF_RATE pins this step's rate (to compare two builds' latency at the same load).
service_half=${SERVICE_HALF_RATE:-$(jq -n "$service_rate / 2 | floor")}
"$loadtest" run "${common[@]}" --rate "$service_half" --duration "$HALF_SECONDS" --seed $((SEED + 3)) \
    --service-pid "$service_pid" --label service-half --report "$OUT/service-half.json"
echo "== where the time went, half rate (per batch or store commit)"
stages half "$OUT/service-max.prom"

[ -e "$OUT/null-fan-out.json" ] || echo '{}' >"$OUT/null-fan-out.json"
jq -n --slurpfile nm "$OUT/null-max.json" --slurpfile nh "$OUT/null-half.json" \
    --slurpfile sm "$OUT/service-max.json" --slurpfile sh "$OUT/service-half.json" \
    --slurpfile nf "$OUT/null-fan-out.json" '{
    null_packages_per_s: $nm[0].throughput.steady_packages_per_s,
    service_packages_per_s: $sm[0].throughput.steady_packages_per_s,
    ratio_service_to_null: (if $sm[0].throughput.steady_packages_per_s == null or ($nm[0].throughput.steady_packages_per_s // 0) == 0
        then null
        else ($sm[0].throughput.steady_packages_per_s / $nm[0].throughput.steady_packages_per_s) * 1000 | round / 1000 end),
    null_half_rate: $nh[0].config.rate, null_half_p99_ms: $nh[0].latency_ms.p99_ms,
    null_fan_out_packages_per_s: $nf[0].throughput.steady_packages_per_s,
    null_fan_out_cpu_cores: $nf[0].service.cpu_cores_steady,
    ratio_service_to_fan_out: (if $sm[0].throughput.steady_packages_per_s == null or ($nf[0].throughput.steady_packages_per_s // 0) == 0
        then null
        else ($sm[0].throughput.steady_packages_per_s / $nf[0].throughput.steady_packages_per_s) * 1000 | round / 1000 end),
    service_half_rate: $sh[0].config.rate,
    service_half_latency_ms: $sh[0].latency_ms,
    service_max_latency_ms: $sm[0].latency_ms,
    service_rss_max_mib: ([$sm[0].service.rss_max_mib, $sh[0].service.rss_max_mib] | max),
    service_rss_steady_halves_mib: [$sm[0].service.rss_steady_first_half_max_mib, $sm[0].service.rss_steady_second_half_max_mib],
    service_cpu_cores: $sm[0].service.cpu_cores_steady, broker_cpu_cores: $sm[0].broker_cpu_cores_steady,
    loadtest_cpu_cores: $sm[0].loadtest_cpu_cores_steady,
    service_half_cpu_cores: $sh[0].service.cpu_cores_steady,
    cpu_us_per_package: (
        def per_package(cores; rate): if cores == null or rate == null or rate == 0 then null
            else (cores / rate * 1e8 | round / 100) end;
        $sm[0].throughput.steady_packages_per_s as $r
        | {service: per_package($sm[0].service.cpu_cores_steady; $r),
           all_processes: per_package(
               if [$sm[0].service.cpu_cores_steady, $sm[0].broker_cpu_cores_steady, $sm[0].loadtest_cpu_cores_steady] | any(. == null)
               then null
               else $sm[0].service.cpu_cores_steady + $sm[0].broker_cpu_cores_steady + $sm[0].loadtest_cpu_cores_steady end; $r),
           service_half_rate: per_package($sh[0].service.cpu_cores_steady; $sh[0].throughput.steady_packages_per_s)}),
    complete: ($nm[0].complete and $nh[0].complete and $sm[0].complete and $sh[0].complete
        and (if $nf[0] | has("complete") then $nf[0].complete else true end))
}' | tee "$OUT/summary.json"
