# Conveyor: a distributed job-queue sync worker fleet for ERP/CMMS/EAM records.
# `just demo` runs the whole thing on this machine; `just test` runs every test.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install what the commands need and is missing: redis-server, cargo-nextest, the Python webhook verifier.
setup:
    scripts/setup.sh

# Start Redis, the source simulator, the API and two workers, run real syncs; Ctrl-C stops everything.
demo: setup
    cargo build --release --bins
    scripts/demo.sh

# Run the whole test suite against real redis-server processes.
test: setup
    cargo build --workspace --bins
    cargo nextest run --workspace --no-fail-fast

# Formatting and lints, as CI runs them.
check:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Run the API against the Redis in CONVEYOR_REDIS_URL (default redis://127.0.0.1:6379/).
run-api:
    cargo run --bin conveyor-api

# Run one worker against the Redis in CONVEYOR_REDIS_URL (default redis://127.0.0.1:6379/).
run-worker:
    cargo run --bin conveyor-worker

# One worker fully syncs RECORDS purchase orders from the simulator, then 1,000 changes incrementally; writes bench/results/sync.json.
bench-sync RECORDS="1000000": setup
    cargo build --release -p conveyor-worker -p conveyor-bench --bin conveyor-worker --bin bench-sync
    target/release/bench-sync {{RECORDS}}

# POST manual syncs to the API with 64 concurrent connections for SECONDS per phase (fresh, duplicate); writes bench/results/api.json.
bench-api SECONDS="10": setup
    cargo build --release -p conveyor-api -p conveyor-bench --bin conveyor-api --bin bench-api
    target/release/bench-api --seconds {{SECONDS}}

# Fuzz the API with schemathesis against its own OpenAPI document (private Redis, API and worker): no 5xx, no response outside the schema; EXAMPLES per operation.
fuzz-api EXAMPLES="50": setup
    crates/conveyor-api/fuzz/run.sh {{EXAMPLES}}

# Run every benchmark and write bench/results/*.json.
bench: setup bench-queue bench-api

# Queue benchmark: conveyor-queue vs apalis-redis vs BullMQ on one redis-server; writes bench/results/queue.json and prints the table.
bench-queue JOBS="100000": setup
    cargo build --release -p conveyor-bench
    cd bench/node && npm install --no-audit --no-fund --loglevel=error
    target/release/bench-queue --jobs {{JOBS}}
