#!/usr/bin/env bash
# The official RocketMQ 5 Python SDK against a fast-try group, before and after SIGKILL of the
# Raft leader. Installs rocketmq-python-client from PyPI into a venv (CI has only Python 3.11).
# Run from the repository root: tests/sdk/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VENV=${RAFTMQ_SDK_VENV:-$ROOT/target/sdk-venv}
SDK_VERSION=5.1.2
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
ENDPOINTS="127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import rocketmq" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "rocketmq-python-client==$SDK_VERSION"
fi

# The SDK writes logs under $HOME/logs; keep them out of the real home (only for the SDK:
# cargo and rustup need the real one).
SDK_HOME="$ROOT/target/sdk-home"
mkdir -p "$SDK_HOME"
sdk() { HOME="$SDK_HOME" "$VENV/bin/python" tests/sdk/python_smoke.py "$@"; }
export RAFTMQ_RUN_DIR="$ROOT/target/fast-try-sdk"
rm -rf /tmp/rmqstore/node00 /tmp/rmqstore/node01 /tmp/rmqstore/node02

cleanup() { bin/fast-try.sh stop || true; }
trap cleanup EXIT

bin/fast-try.sh start
echo "== SDK smoke with all three nodes"
sdk "127.0.0.1:30911"

leader=$("$BIN/mqadmin" clusterList -n "$ENDPOINTS" --leader-id)
pid=$(cat "$RAFTMQ_RUN_DIR/broker-$leader.pid")
echo "== SIGKILL the leader $leader (pid $pid)"
kill -KILL "$pid"
# Point the SDK at a survivor: the Python SDK keeps the endpoint it was given.
case "$leader" in n0) survivor=127.0.0.1:30921 ;; *) survivor=127.0.0.1:30911 ;; esac
echo "== SDK smoke after the leader was killed (via $survivor)"
sdk "$survivor"
echo "sdk: 2 passed, 0 failed"
