#!/usr/bin/env bash
# The RocketMQ 4.x clients (PyPI rocketmq 0.4.4 over the C++ core, npm ali-ons 3.12.0) against a
# fast-try group through its NameServer, as `.ci/run` runs them:
#
#   1. smoke, both clients at once (tests/sdk4/run.sh smoke): sync, oneway (Python), delayed,
#      orderly sends; push consumers in clustering mode, orderly consumption, a retry through
#      %RETRY%group, two consumers sharing a group;
#   2. failover, both at once: they send and consume while the Raft leader is SIGKILLed; each
#      fails unless every acknowledged send is received, and reports its longest gap between
#      acknowledged sends (the outage its application saw).
#
# Topics are created first with mqadmin, as an operator does (ali-ons does not fall back to
# TBW102 for an unknown topic). The brokers run fast-try's confs plus diskMaxUsedSpaceRatio=95, so
# a CI host whose disk is over RocketMQ's default 75% does not refuse every send. Environment: RAFTMQ_BIN (default target/release),
# SDK4_WORK (client installs, default target/sdk4).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
export SDK4_WORK=${SDK4_WORK:-$ROOT/target/sdk4}
export RAFTMQ_RUN_DIR="$SDK4_WORK/fast-try"
export RAFTMQ_CONF_DIR="$SDK4_WORK/conf"
export NAMESRV=127.0.0.1:9876
BROKERS="127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931"
FAILOVER_S=40
KILL_AFTER_S=20 # after the Python client's 12 s settle
LOGS="$SDK4_WORK/logs"
mkdir -p "$LOGS"

cleanup() { bin/fast-try.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

mkdir -p "$RAFTMQ_CONF_DIR"
for n in n0 n1 n2; do
  { cat "conf/dledger/broker-$n.conf"; echo "diskMaxUsedSpaceRatio = 95"; } >"$RAFTMQ_CONF_DIR/broker-$n.conf"
done
rm -rf /tmp/rmqstore/node00 /tmp/rmqstore/node01 /tmp/rmqstore/node02
bin/fast-try.sh start >"$LOGS/fast-try.log" 2>&1 || { cat "$LOGS/fast-try.log"; exit 1; }
for topic in SDK4_python SDK4_node SDK4_fo_python SDK4_fo_node; do
  "$BIN/mqadmin" updateTopic -n "$BROKERS" -t "$topic" -w 8 >/dev/null
done
sleep 2 # the brokers register a new topic at the NameServer within a second

passed=0
failed=0
# run_bg NAME ARGS...: tests/sdk4/run.sh in the background, its output in $LOGS/NAME.log
run_bg() {
  local name=$1
  shift
  SDK4_TOPIC="$1" tests/sdk4/run.sh "${@:2}" >"$LOGS/$name.log" 2>&1 &
}
verdict() { # name pid
  if wait "$2"; then passed=$((passed + 1)); echo "PASS $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
  grep '^{' "$LOGS/$1.log" | sed 's/^/  /' || tail -20 "$LOGS/$1.log" | sed 's/^/  /'
}

echo "== install the clients"
tests/sdk4/run.sh install >"$LOGS/install.log" 2>&1 || { cat "$LOGS/install.log"; exit 1; }

echo "== smoke: both clients at once"
run_bg python-smoke SDK4_python smoke python
py=$!
run_bg node-smoke SDK4_node smoke node
node=$!
verdict python-smoke "$py"
verdict node-smoke "$node"

echo "== failover: the Raft leader is SIGKILLed ${KILL_AFTER_S}s into ${FAILOVER_S}s of sends"
SECONDS_RUN=$FAILOVER_S run_bg python-failover SDK4_fo_python failover python
py=$!
SECONDS_RUN=$FAILOVER_S run_bg node-failover SDK4_fo_node failover node
node=$!
sleep "$KILL_AFTER_S"
leader=$("$BIN/mqadmin" clusterList -n "$BROKERS" --leader-id)
echo "SIGKILL the leader $leader (pid $(cat "$RAFTMQ_RUN_DIR/broker-$leader.pid")) at $(date +%T)"
kill -KILL "$(cat "$RAFTMQ_RUN_DIR/broker-$leader.pid")"
verdict python-failover "$py"
verdict node-failover "$node"

echo "sdk4: $passed passed, $failed failed (logs in $LOGS)"
[ "$failed" = 0 ]
