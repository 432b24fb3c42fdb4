#!/usr/bin/env bash
# Smoke test of the monitoring path with a real Prometheus and a real dutyflow:
#   1. starts `dutyflow demo` (embedded broker and store, built-in generator) with its metrics
#      endpoint on a free loopback port;
#   2. starts Prometheus (the Debian package's binary) on another free loopback port, with its
#      storage in a temporary directory, scraping dutyflow every second and evaluating
#      docker/alerts.yml;
#   3. waits until Prometheus answers `dutyflow_packages_total` with a non-zero value, then
#      checks the live exposition (promtool check metrics, and docs/metrics.md names), that
#      every alert rule evaluates without error, and that every query of the Grafana
#      dashboard is accepted by Prometheus and returns data when its series exist;
#   4. waits for the demo to finish and checks that it exits 0.
# Every process it starts is stopped, and its temporary directory removed, on any exit.
#
# Usage: scripts/prometheus-smoke.sh
#   DUTYFLOW_BIN    the dutyflow binary (default: target/debug/dutyflow)
#   SMOKE_DURATION  seconds the demo produces for (default 25)
#   SMOKE_RATE      packages per second (default 3000)
# Needs prometheus and promtool (Debian package prometheus), curl and python3: scripts/setup.sh
# installs them. A missing tool is an error, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bin=${DUTYFLOW_BIN:-$root/target/debug/dutyflow}
duration=${SMOKE_DURATION:-25}
rate=${SMOKE_RATE:-3000}

say() { echo "prometheus-smoke: $*"; }
tmp=""
fail() {
  echo "prometheus-smoke: FAILED: $*" >&2
  if [ -n "$tmp" ]; then
    for log in dutyflow prometheus; do
      if [ -s "$tmp/$log.log" ]; then
        echo "---- last lines of $log's log ----" >&2
        tr '\r' '\n' <"$tmp/$log.log" | tail -n 25 >&2
      fi
    done
  fi
  exit 1
}
need() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed; run scripts/setup.sh (Debian package $2)"
}
need prometheus prometheus
need promtool prometheus
need curl curl
need python3 python3
[ -x "$bin" ] || fail "no dutyflow binary at $bin; run cargo build -p dutyflow or set DUTYFLOW_BIN"

tmp=$(mktemp -d -t dutyflow-smoke.XXXXXX)
dutyflow_pid=""
prometheus_pid=""
stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$prometheus_pid"
  stop "$dutyflow_pid"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
metrics_port=$(free_port)
prometheus_port=$(free_port)
while [ "$prometheus_port" = "$metrics_port" ]; do prometheus_port=$(free_port); done
metrics="http://127.0.0.1:$metrics_port"
prom="http://127.0.0.1:$prometheus_port"

# ---- dutyflow demo --------------------------------------------------------------------------
# In the temporary directory, so its SQLite store lands there; the caller's broker and store
# settings must not leak in.
mkdir -p "$tmp/work"
say "starting $bin demo --duration $duration --rate $rate (metrics on $metrics)"
(
  cd "$tmp/work"
  unset DUTYFLOW_KAFKA_BROKERS DUTYFLOW_STORE_URL
  export DUTYFLOW_METRICS_LISTEN="127.0.0.1:$metrics_port" DUTYFLOW_CONFIG_DIR="$root/config"
  exec "$bin" demo --duration "$duration" --rate "$rate" --packages 100000000
) >"$tmp/dutyflow.log" 2>&1 &
dutyflow_pid=$!

for _ in $(seq 300); do
  curl -fsS --max-time 1 "$metrics/healthz" >/dev/null 2>&1 && break
  kill -0 "$dutyflow_pid" 2>/dev/null || fail "dutyflow demo exited before serving $metrics/healthz"
  sleep 0.1
done
curl -fsS --max-time 2 "$metrics/healthz" >/dev/null 2>&1 || fail "dutyflow serves no $metrics/healthz after 30 s"

# ---- Prometheus -----------------------------------------------------------------------------
mkdir -p "$tmp/prometheus/data"
cp docker/alerts.yml "$tmp/prometheus/alerts.yml"
cat >"$tmp/prometheus/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: dutyflow
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
EOF
promtool check config "$tmp/prometheus/prometheus.yml" >/dev/null || fail "the generated Prometheus config is invalid"
say "starting prometheus on $prom"
prometheus \
  --config.file="$tmp/prometheus/prometheus.yml" \
  --storage.tsdb.path="$tmp/prometheus/data" \
  --web.listen-address="127.0.0.1:$prometheus_port" \
  >"$tmp/prometheus.log" 2>&1 &
prometheus_pid=$!

for _ in $(seq 300); do
  curl -fsS --max-time 1 "$prom/-/ready" >/dev/null 2>&1 && break
  kill -0 "$prometheus_pid" 2>/dev/null || fail "prometheus exited at start"
  sleep 0.1
done
curl -fsS --max-time 2 "$prom/-/ready" >/dev/null 2>&1 || fail "prometheus is not ready after 30 s"

# query EXPR → the API's JSON answer
query() {
  curl -fsS --max-time 5 -G "$prom/api/v1/query" --data-urlencode "query=$1"
}

# ---- dutyflow_packages_total through Prometheus ---------------------------------------------
say "waiting for Prometheus to see packages (query dutyflow_packages_total)"
seen=""
deadline=$((SECONDS + duration + 30))
while [ $SECONDS -lt $deadline ]; do
  answer=$(query 'dutyflow_packages_total' 2>/dev/null || true)
  if [ -n "$answer" ] && seen=$(printf '%s' "$answer" | python3 -c '
import json, sys
a = json.load(sys.stdin)
vals = [(r["metric"].get("outcome", "?"), float(r["value"][1])) for r in a["data"]["result"]]
if a["status"] == "success" and any(v > 0 for _, v in vals):
    print(", ".join(f"{o}={v:.0f}" for o, v in sorted(vals)))
else:
    sys.exit(1)
' 2>/dev/null); then
    break
  fi
  seen=""
  kill -0 "$dutyflow_pid" 2>/dev/null || break
  sleep 1
done
[ -n "$seen" ] || fail "Prometheus never saw a non-zero dutyflow_packages_total (last answer: ${answer:-none})"
say "Prometheus sees dutyflow_packages_total: $seen"

up=$(query 'up{job="dutyflow"}' | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")')
[ "$up" = "1" ] || fail "up{job=\"dutyflow\"} is $up, not 1"
# Packages are being committed, so the consumer holds partitions and the store answers.
ready=$(curl -sS --max-time 5 -w ' (HTTP %{http_code})' "$metrics/readyz" 2>&1 || true)
case $ready in
  *"(HTTP 200)") say "$metrics/readyz: $(printf '%s' "$ready" | tr -d '\n')" ;;
  *) fail "$metrics/readyz does not answer 200 while packages are committed: $ready" ;;
esac

# ---- the live exposition ---------------------------------------------------------------------
kill -0 "$dutyflow_pid" 2>/dev/null || fail "the demo ended before the live checks; raise SMOKE_DURATION"
say "promtool check metrics on $metrics/metrics"
curl -fsS --max-time 10 "$metrics/metrics" >"$tmp/exposition.txt" || fail "cannot fetch $metrics/metrics"
promtool check metrics <"$tmp/exposition.txt" || fail "$metrics/metrics does not pass promtool check metrics"
python3 - "$tmp/exposition.txt" <<'PY' || fail "$metrics/metrics exposes series that docs/metrics.md does not list"
import re, sys
known = set()
for line in open("docs/metrics.md"):
    m = re.match(r"\|\s*`(dutyflow_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|", line)
    if m:
        name, kind = m.groups()
        known |= {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
live = {m.group(1) for m in (re.match(r"(dutyflow_[A-Za-z0-9_:]*)", l) for l in open(sys.argv[1])) if m}
extra = sorted(live - known)
for name in extra:
    print(f"  {name} is exposed but not documented in docs/metrics.md", file=sys.stderr)
absent = sorted(n for n in known - live if not n.endswith(("_sum", "_count")))
print("  %d series names exposed; not exposed (yet): %s" % (len(live), " ".join(absent) or "none"))
sys.exit(1 if extra else 0)
PY

# Let every rate window hold a few scrapes before the dashboard's queries.
sleep 5

# ---- alert rules evaluate ------------------------------------------------------------------
say "alert rules evaluate without error"
curl -fsS --max-time 5 "$prom/api/v1/rules" >"$tmp/rules.json" || fail "cannot fetch $prom/api/v1/rules"
python3 - "$tmp/rules.json" <<'PY' || fail "an alert rule does not evaluate (see above)"
import json, sys
groups = json.load(open(sys.argv[1]))["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [r for r in rules if r.get("health") != "ok"]
for r in bad:
    print("  %s: health %r %s" % (r["name"], r.get("health"), r.get("lastError", "")), file=sys.stderr)
firing = [r["name"] for r in rules if r.get("state") == "firing"]
print("  %d rules, %d healthy; firing: %s" % (len(rules), len(rules) - len(bad), ", ".join(firing) or "none"))
sys.exit(1 if bad or not rules else 0)
PY

# ---- dashboard queries ---------------------------------------------------------------------
say "every Grafana dashboard query runs against the live Prometheus"
python3 - "$prom" "$tmp/exposition.txt" <<'PY' || fail "a dashboard query fails or stays empty (see above)"
import json, re, sys, urllib.parse, urllib.request

prom, exposition = sys.argv[1], sys.argv[2]
live = {m.group(1) for m in (re.match(r"(dutyflow_[A-Za-z0-9_:]*)", l) for l in open(exposition)) if m}
dash = json.load(open("docker/grafana/dashboards/dutyflow.json"))
exprs = []
def walk(panels):
    for p in panels:
        exprs.extend((p["title"], t["expr"]) for t in p.get("targets", []))
        walk(p.get("panels", []))
walk(dash["panels"])
# Grafana's variables, as Grafana would expand them for "All" and a short range.
subst = {"$__rate_interval": "10s", "$__range": "1m", "$job": ".*", "$instance": ".*"}
bad = empty_ok = 0
for title, expr in exprs:
    q = expr
    for k, v in subst.items():
        q = q.replace(k, v)
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        answer = json.load(urllib.request.urlopen(url, timeout=10))
    except Exception as e:  # HTTP 400 carries the parse error in its body
        body = getattr(e, "read", lambda: b"")().decode(errors="replace")
        print(f"  {title!r}: {q}\n    rejected: {e} {body}", file=sys.stderr)
        bad += 1
        continue
    result = answer["data"]["result"]
    needed = set(re.findall(r"\bdutyflow_[a-z0-9_]+", q))
    if not result and needed <= live:
        print(f"  {title!r}: {q}\n    no data although its series are exposed", file=sys.stderr)
        bad += 1
    elif not result:
        empty_ok += 1
        print(f"  {title!r}: no data yet ({', '.join(sorted(needed - live))} not exposed)")
print(f"  {len(exprs)} queries: {len(exprs) - bad - empty_ok} with data, {empty_ok} waiting for their series, {bad} bad")
# The template variables: label_values(SELECTOR, LABEL) is Grafana's call of the label values API.
for v in dash.get("templating", {}).get("list", []):
    q = v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else q or ""
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q)
    if not m:
        print(f"  variable {v['name']}: {q!r} is not label_values(SELECTOR, LABEL)", file=sys.stderr)
        bad += 1
        continue
    selector, label = m.group(1), m.group(2)
    for k, val in subst.items():
        selector = selector.replace(k, val)
    url = f"{prom}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": selector})
    values = json.load(urllib.request.urlopen(url, timeout=10))["data"]
    if not values:
        print(f"  variable {v['name']}: {q} has no values", file=sys.stderr)
        bad += 1
    else:
        print(f"  variable {v['name']}: {', '.join(values)}")
sys.exit(1 if bad else 0)
PY

# ---- the demo ends cleanly ------------------------------------------------------------------
say "waiting for the demo to finish"
for _ in $(seq $(((duration + 60) * 10))); do
  kill -0 "$dutyflow_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$dutyflow_pid" 2>/dev/null && fail "dutyflow demo is still running $((duration + 60)) s after its start"
status=0
wait "$dutyflow_pid" || status=$?
dutyflow_pid=""
[ "$status" = 0 ] || fail "dutyflow demo exited with status $status"
say "demo summary:"
tr '\r' '\n' <"$tmp/dutyflow.log" | sed 's/^/  /' | tail -n 20
say "passed"
