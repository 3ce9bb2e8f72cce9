#!/usr/bin/env bash
# A rolling restart of a fast-try group under mqbench load: a fresh group (conf/dledger, data
# wiped), mqbench sending 1 KiB messages through every node with the SDKs' retry on another
# address (--retries 2), and after WARMUP_S every node in turn, the leader last, restarted with
# `bin/fast-try.sh restart` (SIGTERM: a leader hands off first; start; wait until it serves).
# Prints mqbench's report (failed sends, resent requests, max latency = the longest a send
# waited) and each restart's time; exits 1 if any send failed.
#
# Environment: RAFTMQ_BIN (default target/release, built when missing), OUT (default
# target/rolling-restart), DURATION (mqbench seconds, default 60), WARMUP_S (before the first
# restart, default 10), GAP_S (between restarts, default 5).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/target/rolling-restart}
BIN_GIVEN=${RAFTMQ_BIN:-}
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
DURATION=${DURATION:-60}
WARMUP_S=${WARMUP_S:-10}
GAP_S=${GAP_S:-5}
NODES=(n0 n1 n2)
PORTS=(30911 30921 30931 40911 40912 40913)
ADDRS="127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931"
mkdir -p "$OUT"
export RAFTMQ_RUN_DIR="$OUT/run"
export RAFTMQ_BIN="$BIN"
say() { echo "rolling-restart: $*" >&2; }
die() {
  say "$*"
  exit 1
}
STARTED=0
PIDS=""
# shellcheck source=bin/lib/group.sh
. "$ROOT/bin/lib/group.sh"
trap group_stop EXIT
trap 'exit 130' INT TERM

build_binaries
mkdir -p "$OUT/conf"
for n in "${NODES[@]}"; do
  { cat "conf/dledger/broker-$n.conf"; echo "diskMaxUsedSpaceRatio = 95"; } >"$OUT/conf/broker-$n.conf"
done
export RAFTMQ_CONF_DIR="$OUT/conf"
refuse_if_busy rolling-restart.sh
rm -rf /tmp/rmqstore/node00 /tmp/rmqstore/node01 /tmp/rmqstore/node02
group_up "$OUT/conf" rolling-restart.sh

# (No --broker-pids: the restarted brokers get new PIDs.)
"$BIN/mqbench" producer -n "$ADDRS" --target all --retries 2 -s 1024 --connections 3 \
  --inflight 16 --duration "$DURATION" >"$OUT/mqbench.txt" 2>"$OUT/mqbench.log" &
bench=$!
sleep "$WARMUP_S"
leader=$("$BIN/mqadmin" clusterList -n "$ADDRS" --leader-id)
order=()
for n in "${NODES[@]}"; do [ "$n" = "$leader" ] || order+=("$n"); done
order+=("$leader")
say "restarting ${order[*]} (leader $leader last)"
for n in "${order[@]}"; do
  bin/fast-try.sh restart "$n" 2>&1 | sed 's/^/  /' >&2
  sleep "$GAP_S"
done
wait "$bench" || true
cat "$OUT/mqbench.txt"
grep -q "errors 0)" "$OUT/mqbench.txt" || die "sends failed during the rolling restart (see $OUT/mqbench.txt)"
say "no send failed"
