#!/usr/bin/env bash
# Fuzz the running API with schemathesis (PyPI) against its own OpenAPI document: no request may
# get a 5xx, and every response must match the documented schema. `just fuzz-api [EXAMPLES]`.
#
# Starts a private redis-server, the API (and a worker, if the worker binary builds), bootstraps
# an admin key with conveyorctl, creates a connection so some ids resolve, then runs schemathesis
# for at most EXAMPLES examples per operation. Everything it started is stopped on exit.
#
# Revoking keys (`DELETE /v1/api_keys/{id}`) is left out: the stateful phase lists the tenant's
# keys and would revoke the very key it authenticates with, leaving every later request a 401.
# One worker: schemathesis's generators share caches that are not safe across its threads.
set -euo pipefail

EXAMPLES="${1:-50}"
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d -t conveyor-fuzz-XXXXXX)"
PIDS=()
cleanup() {
    # Newest first, so the worker and the API stop while Redis still answers; whatever has not
    # exited after ten seconds is killed.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid="${PIDS[$i]}"
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

VENV="$ROOT/target/fuzz-venv"
if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet 'schemathesis>=4,<5'
fi

cargo build --bin conveyor-api --bin conveyorctl
WORKER=""
if cargo build --bin conveyor-worker >/dev/null 2>&1; then WORKER="target/debug/conveyor-worker"; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS_PORT="$(free_port)"
API_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
export CONVEYOR_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
export CONVEYOR_ENCRYPTION_KEYS="k1:$(head -c 32 /dev/urandom | base64)"
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

CONVEYOR_API_LISTEN="127.0.0.1:$API_PORT" CONVEYOR_API_RATE_LIMIT=10000000 CONVEYOR_API_RATE_BURST=1000000 \
    target/debug/conveyor-api >"$WORK/api.log" 2>&1 &
PIDS+=($!)
if [ -n "$WORKER" ]; then
    target/debug/conveyor-worker >"$WORK/worker.log" 2>&1 &
    PIDS+=($!)
    echo "fuzz-api: with a worker"
else
    echo "fuzz-api: the worker does not build; fuzzing the API alone"
fi
BASE="http://127.0.0.1:$API_PORT"
for _ in $(seq 200); do curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.05; done

KEY="$(target/debug/conveyorctl bootstrap --tenant fuzz | sed -n 's/^api_key: //p')"
curl -fsS -X POST "$BASE/v1/connections" -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
    -d '{"name":"fuzz","profile":"odata_v4","base_url":"http://127.0.0.1:9/odata","credentials":{"type":"none"},"entities":[{"entity":"assets"}]}' \
    >/dev/null

STATUS=0
# From the scratch directory: schemathesis keeps its reports and example cache where it runs.
(cd "$WORK" && "$VENV/bin/schemathesis" run "$BASE/v1/openapi.json" \
    --url "$BASE" \
    --header "Authorization: Bearer $KEY" \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance \
    --max-examples "$EXAMPLES" \
    --seed 1 \
    --exclude-path-regex '^/v1/api_keys/' \
    --workers 1) || STATUS=$?
if [ "$STATUS" -ne 0 ]; then
    cp "$WORK/api.log" "$ROOT/target/fuzz-api.log"
    echo "--- API errors and warnings (the whole log is in target/fuzz-api.log) ---"
    grep -E 'ERROR|WARN' "$WORK/api.log" | tail -n 50 || true
fi
exit "$STATUS"
