#!/usr/bin/env bash
# `just demo`: the whole fleet on this machine, then real syncs through the public API.
#
# Starts redis-server, the source simulator (SAP OData, Maximo OSLC, Oracle REST; 20,000 records
# per entity), a webhook receiver that verifies signatures with the official Standard Webhooks
# library, the API and two workers; bootstraps an admin key with conveyorctl; then
# scripts/demo_drive.py creates three connections, subscribes the receiver, runs full and
# incremental syncs and shows counts, status, a record, the queues and the webhooks received.
#
# Everything it starts is stopped on exit; logs stay under .demo/. Ctrl-C stops the fleet.
# DEMO_EXIT=1 stops once the syncs are shown (CI smoke runs). DEMO_RECORDS sets the records per
# entity (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=.demo
BIN=target/release
RECORDS=${DEMO_RECORDS:-20000}
mkdir -p "$DEMO_DIR"
rm -f "$DEMO_DIR"/*.log "$DEMO_DIR"/events.jsonl*

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS_PORT=${CONVEYOR_DEMO_REDIS_PORT:-$(free_port)}
API_PORT=${CONVEYOR_DEMO_API_PORT:-8080}
SIM_PORT=$(free_port)

pids=()
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping (SIGTERM; workers hand back running jobs)"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "demo: stopped; logs are in $DEMO_DIR/"
}
trap cleanup EXIT INT TERM

wait_for() { # description, command...
    local what=$1; shift
    for _ in $(seq 1 300); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "demo: $what did not come up; see $DEMO_DIR/" >&2
    exit 1
}

if curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/healthz" 2>/dev/null; then
    echo "demo: port $API_PORT is taken; set CONVEYOR_DEMO_API_PORT" >&2
    exit 1
fi

echo "demo: redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DEMO_DIR" --logfile redis.log &
pids+=($!)
wait_for "redis-server" redis-cli -p "$REDIS_PORT" ping

echo "demo: conveyor-sim on 127.0.0.1:$SIM_PORT ($RECORDS records per entity, 2 changes/s)"
CONVEYOR_SIM_ADDR="127.0.0.1:$SIM_PORT" CONVEYOR_SIM_RECORDS="$RECORDS" \
    CONVEYOR_SIM_CHURN_PER_SECOND=2 CONVEYOR_SIM_LOG=warn \
    "$BIN/conveyor-sim" >"$DEMO_DIR/sim.log" 2>&1 &
pids+=($!)

echo "demo: webhook receiver (verifies with the official standardwebhooks package)"
python3 scripts/demo_receiver.py "$DEMO_DIR/receiver.port" "$DEMO_DIR/events.jsonl" \
    >"$DEMO_DIR/receiver.log" 2>&1 &
pids+=($!)

export CONVEYOR_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
export CONVEYOR_LOG=${CONVEYOR_LOG:-info}
# A fresh data key per demo run (Redis keeps nothing between runs). Production keys come from a
# secret store; see the README's configuration table.
CONVEYOR_ENCRYPTION_KEYS="demo:$(head -c 32 /dev/urandom | base64)"
export CONVEYOR_ENCRYPTION_KEYS
# The receiver and the simulator are on loopback, which production refuses.
export CONVEYOR_WEBHOOKS_ALLOW_PRIVATE=true

echo "demo: conveyor-api on 127.0.0.1:$API_PORT"
CONVEYOR_API_LISTEN="127.0.0.1:$API_PORT" "$BIN/conveyor-api" >"$DEMO_DIR/api.log" 2>&1 &
pids+=($!)
for n in 1 2; do
    echo "demo: conveyor-worker #$n"
    "$BIN/conveyor-worker" >"$DEMO_DIR/worker-$n.log" 2>&1 &
    pids+=($!)
done

API="http://127.0.0.1:$API_PORT"
wait_for "conveyor-sim" curl -fsS "http://127.0.0.1:$SIM_PORT/admin/health"
wait_for "the webhook receiver" test -s "$DEMO_DIR/receiver.port"
wait_for "conveyor-api" curl -fsS "$API/readyz"
for n in 1 2; do wait_for "worker #$n" grep -q "conveyor-worker ready" "$DEMO_DIR/worker-$n.log"; done

echo
echo "demo: GET /healthz -> $(curl -fsS "$API/healthz")"
echo "demo: GET /readyz  -> $(curl -fsS "$API/readyz")"
echo "demo: workers ready: $(grep -l 'conveyor-worker ready' "$DEMO_DIR"/worker-*.log | wc -l)/2"

KEY="$("$BIN/conveyorctl" bootstrap --tenant demo | sed -n 's/^api_key: //p')"
echo "demo: bootstrapped an admin key for tenant 'demo' (conveyorctl bootstrap)"
echo

DEMO_API="$API" DEMO_KEY="$KEY" DEMO_SIM="http://127.0.0.1:$SIM_PORT" \
    DEMO_EVENTS="$DEMO_DIR/events.jsonl" \
    DEMO_RECEIVER="http://127.0.0.1:$(cat "$DEMO_DIR/receiver.port")/webhooks" \
    python3 scripts/demo_drive.py

if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo
echo "demo: the fleet keeps running. Try:"
echo "  export CONVEYOR_API_URL=$API CONVEYOR_API_KEY=$KEY"
echo "  $BIN/conveyorctl stats"
echo "  curl -H \"authorization: Bearer \$CONVEYOR_API_KEY\" $API/v1/connections"
echo "demo: Ctrl-C to stop. Logs: $DEMO_DIR/"
wait
