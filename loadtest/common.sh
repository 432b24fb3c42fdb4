# Sourced by run.sh and backlog.sh: the release binaries they run, and stopping every process
# they started. Expects BIN_DIR; defines `dutyflow`, `loadtest`, `started` (PIDs to stop, in
# start order), `stop` and `stop_started`.

me=$(basename "$0")
dutyflow=$BIN_DIR/dutyflow
loadtest=$BIN_DIR/dutyflow-loadtest
for b in "$dutyflow" "$loadtest"; do
    [ -x "$b" ] || { echo "$me: $b not found; build with cargo build --release -p dutyflow -p dutyflow-loadtest and set BIN_DIR" >&2; exit 2; }
done

started=()
stop() { # stop PID: TERM, then KILL after 15 s
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    echo "$me: pid $pid did not stop on SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
}
stop_started() { # the last started first
    local i
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do stop "${started[i]}"; done
    wait 2>/dev/null || true
}
trap 'exit 130' INT TERM
