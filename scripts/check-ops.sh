#!/usr/bin/env bash
# Checks the operations files without a Docker engine:
#   - the alert rules (promtool check rules) and their unit tests (docker/alerts.test.yml);
#   - the Prometheus configuration (promtool check config);
#   - the compose file (docker-compose config -q), and that every DUTYFLOW_* variable it or the
#     Dockerfile sets names a real key of config/dutyflow.toml (unknown ones are ignored at run
#     time, silently);
#   - that the packages the Dockerfile builds have the binaries it copies;
#   - the Grafana provisioning and dashboard (valid JSON, one datasource uid, unique panel ids);
#   - that every dutyflow_* series the dashboard and the alerts use is in docs/metrics.md.
# Given the URL of a running dutyflow metrics endpoint (e.g. http://127.0.0.1:9464), also:
#   - /healthz answers 200;
#   - /metrics passes `promtool check metrics`;
#   - every dutyflow_* series it exposes is in docs/metrics.md.
#
# Usage: scripts/check-ops.sh [URL]
# Needs promtool (Debian package prometheus), docker-compose, python3 with PyYAML, curl and
# cargo: scripts/setup.sh installs them. A missing tool is an error, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

url=${1:-}
fail() {
  echo "check-ops: FAILED: $*" >&2
  exit 1
}
step() { echo "check-ops: $*"; }
need() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed; run scripts/setup.sh (Debian package $2)"
}

need promtool prometheus
need docker-compose docker-compose
need cargo "rustup"
# A python3 with PyYAML (Debian's python3-yaml comes with docker-compose) and tomllib (3.11+).
PY=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml, tomllib' 2>/dev/null; then
    PY=$candidate
    break
  fi
done
[ -n "$PY" ] || fail "no python3 (3.11 or later) with PyYAML; run scripts/setup.sh (Debian packages python3, python3-yaml)"

tmp=$(mktemp -d -t dutyflow-check-ops.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

step "promtool check rules docker/alerts.yml"
promtool check rules docker/alerts.yml || fail "docker/alerts.yml has invalid rules"

step "promtool test rules docker/alerts.test.yml"
promtool test rules docker/alerts.test.yml || fail "the alert rule unit tests (docker/alerts.test.yml) failed"

# Static targets are not resolved, so the compose host names (dutyflow:9464) need no DNS; the
# rule file is resolved relative to the config file.
step "promtool check config docker/prometheus.yml"
promtool check config docker/prometheus.yml || fail "docker/prometheus.yml is invalid"

step "docker-compose config -q"
docker-compose -f docker/docker-compose.yml config -q || fail "docker/docker-compose.yml is invalid"
docker-compose -f docker/docker-compose.yml config >"$tmp/compose.yml" || fail "docker/docker-compose.yml is invalid"

step "DUTYFLOW_* variables of the compose file and the Dockerfile name real settings"
"$PY" - "$tmp/compose.yml" docker/Dockerfile config/dutyflow.toml <<'PY' || fail "a DUTYFLOW_* variable names no setting"
import re, sys, tomllib, yaml

compose = yaml.safe_load(open(sys.argv[1]))
dockerfile = open(sys.argv[2]).read()
settings = tomllib.load(open(sys.argv[3], "rb"))
# Read by the binary itself rather than through config/dutyflow.toml.
special = {"DUTYFLOW_CONFIG_DIR", "DUTYFLOW_LOG"}
found = []
for name, svc in compose["services"].items():
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    found += [(f"service {name}", k) for k in env if k.startswith("DUTYFLOW_")]
found += [("docker/Dockerfile", k) for k in re.findall(r"\b(DUTYFLOW_[A-Z0-9_]+)=", dockerfile)]
bad = []
for where, var in found:
    if var in special or var.startswith("DUTYFLOW_RDKAFKA_"):
        continue
    section, _, key = var[len("DUTYFLOW_"):].lower().partition("_")
    if key not in settings.get(section, {}):
        bad.append(f"{where}: {var} (no key {key!r} in [{section}] of config/dutyflow.toml)")
for b in bad:
    print("  " + b, file=sys.stderr)
print(f"  {len(found)} variable(s) checked")
sys.exit(1 if bad else 0)
PY

step "the packages docker/Dockerfile builds have the binaries it copies"
cargo metadata --no-deps --format-version 1 --offline >"$tmp/metadata.json" \
  || fail "cargo metadata failed"
"$PY" - "$tmp/metadata.json" docker/Dockerfile <<'PY' || fail "docker/Dockerfile would not find a binary it copies"
import json, re, sys

meta = json.load(open(sys.argv[1]))
dockerfile = open(sys.argv[2]).read()
build = re.search(r"cargo build[^\n]*", dockerfile).group(0)
packages = re.findall(r"-p\s+(\S+)", build)
bins = {t["name"] for p in meta["packages"] if p["name"] in packages
        for t in p["targets"] if "bin" in t["kind"]}
copied = set(re.findall(r"target/release/([A-Za-z0-9_-]+)", dockerfile))
missing = sorted(copied - bins)
for m in missing:
    print(f"  no binary target {m!r} in packages {packages}", file=sys.stderr)
print(f"  packages {packages}: binaries {sorted(bins)}")
sys.exit(1 if missing else 0)
PY

step "Grafana provisioning and dashboard"
"$PY" - <<'PY' || fail "the Grafana provisioning or dashboard is inconsistent"
import json, sys, yaml

ok = True
def problem(msg):
    global ok
    ok = False
    print("  " + msg, file=sys.stderr)

ds = yaml.safe_load(open("docker/grafana/provisioning/datasources/prometheus.yml"))
uids = {d["uid"] for d in ds["datasources"]}
prov = yaml.safe_load(open("docker/grafana/provisioning/dashboards/dutyflow.yml"))
compose = yaml.safe_load(open("docker/docker-compose.yml"))
mounts = compose["services"]["grafana"]["volumes"]
for p in prov["providers"]:
    path = p["options"]["path"]
    if not any(m.split(":")[1] == path and m.split(":")[0] == "./grafana/dashboards" for m in mounts):
        problem(f"dashboard provider path {path} is not where compose mounts docker/grafana/dashboards")
try:
    dash = json.load(open("docker/grafana/dashboards/dutyflow.json"))
except ValueError as e:
    problem(f"docker/grafana/dashboards/dutyflow.json is not valid JSON: {e}")
    sys.exit(1)
ids, exprs = [], 0
def walk(panels):
    global exprs
    for p in panels:
        ids.append(p["id"])
        if p.get("type") != "row":
            if p.get("datasource", {}).get("uid") not in uids:
                problem(f"panel {p['title']!r}: datasource is not one of {sorted(uids)}")
            if not p.get("targets"):
                problem(f"panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            exprs += 1
            if not t.get("expr"):
                problem(f"panel {p['title']!r}: a target has no expr")
            if t.get("datasource", {}).get("uid") not in uids:
                problem(f"panel {p['title']!r}: a target's datasource is not one of {sorted(uids)}")
        walk(p.get("panels", []))
walk(dash["panels"])
if len(ids) != len(set(ids)):
    problem("panel ids are not unique")
print(f"  dashboard {dash['title']!r}: {len(ids)} panels, {exprs} queries")
sys.exit(0 if ok else 1)
PY

# The series of docs/metrics.md: counters and gauges by name, histograms as _bucket/_sum/_count.
catalogue_series() {
  "$PY" - <<'PY'
import re
for line in open("docs/metrics.md"):
    m = re.match(r"\|\s*`(dutyflow_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|", line)
    if not m:
        continue
    name, kind = m.groups()
    if kind == "histogram":
        for suffix in ("_bucket", "_sum", "_count"):
            print(name + suffix)
    else:
        print(name)
PY
}
series=$(catalogue_series)
[ -n "$series" ] || fail "no series found in docs/metrics.md"

step "every series the dashboard and the alerts use is in docs/metrics.md"
CATALOGUE="$series" "$PY" - <<'PY' || fail "the dashboard or the alerts use a series that docs/metrics.md does not list"
import json, os, re, sys, yaml

known = set(os.environ["CATALOGUE"].split())
used = []
dash = json.load(open("docker/grafana/dashboards/dutyflow.json"))
def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            used.append((f"panel {p['title']!r}", t["expr"]))
        walk(p.get("panels", []))
walk(dash["panels"])
for v in dash.get("templating", {}).get("list", []):
    q = v.get("query")
    used.append((f"variable {v['name']}", q["query"] if isinstance(q, dict) else q or ""))
for g in yaml.safe_load(open("docker/alerts.yml"))["groups"]:
    for r in g["rules"]:
        used.append((f"rule {r.get('alert') or r.get('record')}", r["expr"]))
bad = 0
for where, expr in used:
    for name in re.findall(r"\bdutyflow_[a-z0-9_]+", expr):
        if name not in known:
            bad += 1
            print(f"  {where}: {name} is not a series of docs/metrics.md", file=sys.stderr)
print(f"  {len(used)} expressions checked against {len(known)} catalogue series")
sys.exit(1 if bad else 0)
PY

step "every alert has a summary, a description and a runbook that exists in README.md"
"$PY" - <<'PY' || fail "an alert's annotations or runbook are missing (see above)"
import re, sys, yaml

# GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
anchors = {re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-")
           for m in re.finditer(r"^#+\s+(.*)$", open("README.md").read(), re.M)}
bad = 0
alerts = [r for g in yaml.safe_load(open("docker/alerts.yml"))["groups"] for r in g["rules"] if "alert" in r]
for r in alerts:
    a = r.get("annotations", {})
    for key in ("summary", "description", "runbook"):
        if not a.get(key):
            bad += 1
            print(f"  {r['alert']}: no {key} annotation", file=sys.stderr)
    doc, _, anchor = a.get("runbook", "").partition("#")
    if a.get("runbook") and (doc != "README.md" or anchor not in anchors):
        bad += 1
        print(f"  {r['alert']}: runbook {a['runbook']} is not a heading of README.md", file=sys.stderr)
print(f"  {len(alerts)} alerts checked")
sys.exit(1 if bad else 0)
PY

if [ -n "$url" ]; then
  need curl curl
  url=${url%/}
  step "$url/healthz"
  curl -fsS --max-time 5 "$url/healthz" >/dev/null || fail "$url/healthz does not answer 200"
  step "$url/metrics | promtool check metrics"
  exposition=$(curl -fsS --max-time 10 "$url/metrics") || fail "cannot fetch $url/metrics"
  [ -n "$exposition" ] || fail "$url/metrics is empty"
  printf '%s\n' "$exposition" | promtool check metrics || fail "$url/metrics does not pass promtool check metrics"
  step "every dutyflow_* series of $url/metrics is in docs/metrics.md"
  printf '%s\n' "$exposition" | CATALOGUE="$series" "$PY" -c '
import os, re, sys
known = set(os.environ["CATALOGUE"].split())
live = set()
for line in sys.stdin:
    m = re.match(r"(dutyflow_[a-zA-Z0-9_:]*)", line)
    if m:
        live.add(m.group(1))
extra = sorted(live - known)
for name in extra:
    print(f"  {name} is exposed but not documented in docs/metrics.md", file=sys.stderr)
absent = sorted(n for n in known - live if not n.endswith(("_sum", "_count")))
print("  %d live series names; not exposed (yet): %s" % (len(live), " ".join(absent) or "none"))
sys.exit(1 if extra else 0)
' || fail "$url/metrics exposes series that docs/metrics.md does not list"
fi

step "all checks passed"
