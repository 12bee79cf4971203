#!/usr/bin/env bash
# `just demo`: Redis, the API and two workers on this machine, with their logs under .demo/.
# Ctrl-C stops everything. DEMO_EXIT=1 stops after the health checks (used by CI smoke runs).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=.demo
REDIS_PORT=${CONVEYOR_DEMO_REDIS_PORT:-6390}
API_PORT=${CONVEYOR_DEMO_API_PORT:-8080}
BIN=target/debug
mkdir -p "$DEMO_DIR"
rm -f "$DEMO_DIR"/*.log

pids=()
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping (SIGTERM, then the workers hand back their jobs)"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo: stopped; logs are in $DEMO_DIR/"
}
trap cleanup EXIT INT TERM

wait_for() { # description, command...
    local what=$1; shift
    for _ in $(seq 1 200); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "demo: $what did not come up; see $DEMO_DIR/" >&2
    exit 1
}

echo "demo: starting redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DEMO_DIR" --logfile redis.log &
pids+=($!)
wait_for "redis-server" redis-cli -p "$REDIS_PORT" ping

export CONVEYOR_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
export CONVEYOR_LOG=${CONVEYOR_LOG:-info}

echo "demo: starting conveyor-api on 127.0.0.1:$API_PORT"
CONVEYOR_API_LISTEN="127.0.0.1:$API_PORT" "$BIN/conveyor-api" >"$DEMO_DIR/api.log" 2>&1 &
pids+=($!)
for n in 1 2; do
    echo "demo: starting conveyor-worker #$n"
    "$BIN/conveyor-worker" >"$DEMO_DIR/worker-$n.log" 2>&1 &
    pids+=($!)
done

wait_for "conveyor-api" curl -fsS "http://127.0.0.1:$API_PORT/readyz"
for n in 1 2; do wait_for "worker #$n" grep -q "conveyor-worker ready" "$DEMO_DIR/worker-$n.log"; done

echo
echo "demo: GET /healthz -> $(curl -fsS "http://127.0.0.1:$API_PORT/healthz")"
echo "demo: GET /readyz  -> $(curl -fsS "http://127.0.0.1:$API_PORT/readyz")"
echo "demo: workers ready: $(grep -l 'conveyor-worker ready' "$DEMO_DIR"/worker-*.log | wc -l)/2"

if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo
echo "demo: running; Ctrl-C to stop. Logs: $DEMO_DIR/{api,worker-1,worker-2,redis}.log"
wait
