#!/usr/bin/env bash
# Installs what `just demo` and `just test` need and is missing. Safe to run again: it only
# installs what is not there. Needs root or sudo for apt-get.
set -euo pipefail

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup: need root (or sudo) to run: $*" >&2; exit 1; fi
}

if ! command -v redis-server >/dev/null; then
    echo "setup: installing redis-server with apt-get"
    as_root apt-get install -y -qq redis-server >/dev/null 2>&1 || {
        as_root apt-get update -qq && as_root apt-get install -y -qq redis-server
    }
    # The Debian package starts a system service on 6379; our commands start their own servers.
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest (cargo install, a few minutes once)"
    cargo install --locked cargo-nextest
fi

# The official Standard Webhooks verifier, used by conveyor-webhooks' interop test.
if ! python3 -c "import standardwebhooks" >/dev/null 2>&1; then
    echo "setup: installing the standardwebhooks Python package (independent signature verifier)"
    python3 -m pip install --quiet standardwebhooks==1.1.0 2>/dev/null \
        || python3 -m pip install --quiet --user standardwebhooks==1.1.0 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages standardwebhooks==1.1.0
fi
