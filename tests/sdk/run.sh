#!/usr/bin/env bash
# The three official RocketMQ 5 SDKs against a fast-try group: Python (PyPI
# rocketmq-python-client), Node.js (npm rocketmq-client-nodejs) and Rust (crates.io rocketmq),
# each installed here from its registry.
#
#   1. smoke, each SDK with a single address, then with the group's addresses in the form README
#      tells users ("SDKs"): normal, FIFO and delay sends; receive, change-invisible (Python,
#      Node), ack, redelivery with delivery attempt 2. The three run at once. Then Python's
#      recall_message: a delay message recalled before its time never arrives (a second recall
#      is refused), the other delay message does.
#   2. transactions (Python, Node, Rust, at once): each SDK's transactional producer with a
#      TransactionChecker, and a SimpleConsumer: a commit (delivered exactly once, and not before
#      the commit: a receive before it gets nothing), a rollback (never delivered) and two half
#      messages left open for the broker's check-back, whose answers (one commit, one rollback)
#      must hold; Node and Rust then watch three more check intervals. Then the same with the
#      leader (n2) SIGKILLed between the half messages and their end, one kill for the three,
#      each SDK connected to a node that lives (see tx_failover: SDK limits); the killed node is
#      started again afterwards. The group runs with short transaction checks for these
#      (TX_TIMEOUT_MS, TX_CHECK_INTERVAL_S; see GROUP_CONF).
#   3. failover: the three SDKs send and receive at once, configured as README tells users, while
#      the leader is SIGKILLed; each checks that every acknowledged send is received and that it
#      recovered. Leadership is moved to n0 first: the multi-address Python client is connected
#      to n0 (grpc-core picks the first address), so it loses its own node; the Node client,
#      which takes one address, is given n1's.
#
# Run from anywhere: tests/sdk/run.sh. Environment: RAFTMQ_BIN (mqbroker/mqadmin, default
# target/release), RAFTMQ_SDK_DIR (venv, node_modules, Rust build, the group's broker confs;
# default target/sdk).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SDK_DIR=${RAFTMQ_SDK_DIR:-$ROOT/target/sdk}
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
PYTHON_SDK=rocketmq-python-client==5.1.2
SINGLE=127.0.0.1:30911
MULTI_PY="127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931"
MULTI_RS="127.0.0.1:30911,127.0.0.1:30921,127.0.0.1:30931"
NODE_ADDR=127.0.0.1:30921 # n1: the Node SDK takes one address (README "SDKs")
FAILOVER_S=20
# The transaction checks' timing (broker.conf keys) for the whole run: a half message is first
# checked back after 10 s, so the SDKs' 5 s receive before their commit, and the wait for the
# leader kill, end before it; then every 5 s, so the SDKs' watch of three intervals for
# rolled-back or repeated deliveries spans three more check rounds.
TX_TIMEOUT_MS=10000
TX_CHECK_INTERVAL_S=5
# The group's broker confs: fast-try's, plus those two keys and diskMaxUsedSpaceRatio=95 (as the
# broker's own tests set), so that a build disk past the default 75 % (CI shares it with cargo)
# does not refuse the SDKs' sends.
GROUP_CONF="$SDK_DIR/conf"
LOGS="$SDK_DIR/logs"
export RAFTMQ_RUN_DIR="$SDK_DIR/fast-try"
export RAFTMQ_CONF_DIR="$GROUP_CONF"
# The SDKs write logs under $HOME/logs; keep them out of the real home (only for the SDKs:
# cargo and rustup need the real one).
SDK_HOME="$SDK_DIR/home"
mkdir -p "$SDK_DIR" "$LOGS" "$SDK_HOME"

step() { printf '\n== %s\n' "$*"; }

install_python() {
  if [ ! -x "$SDK_DIR/venv/bin/python" ] || ! "$SDK_DIR/venv/bin/python" -c "import rocketmq" 2>/dev/null; then
    python3 -m venv "$SDK_DIR/venv"
    "$SDK_DIR/venv/bin/pip" install --quiet --disable-pip-version-check "$PYTHON_SDK"
  fi
}

install_node() {
  mkdir -p "$SDK_DIR/node"
  if ! cmp -s tests/sdk/package-lock.json "$SDK_DIR/node/package-lock.json" || [ ! -d "$SDK_DIR/node/node_modules/rocketmq-client-nodejs" ]; then
    cp tests/sdk/package.json tests/sdk/package-lock.json "$SDK_DIR/node/"
    (cd "$SDK_DIR/node" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

build_rust() {
  CARGO_TARGET_DIR="$SDK_DIR/rust-target" cargo build --quiet --locked \
    --manifest-path tests/sdk/rust/Cargo.toml
}

# sdk NAME ARGS...: run one SDK program, its output in $LOGS/NAME.log, its verdict on stdout.
sdk() {
  local name=$1 lang=${1%%-*}
  shift
  local rc=0
  case "$lang" in
    python) HOME="$SDK_HOME" "$SDK_DIR/venv/bin/python" tests/sdk/python_smoke.py "$@" ;;
    node) HOME="$SDK_HOME" NODE_PATH="$SDK_DIR/node/node_modules" node tests/sdk/node_smoke.js "$@" ;;
    rust) (cd "$SDK_HOME" && "$SDK_DIR/rust-target/debug/raftmq-rust-sdk-smoke" "$@") ;;
  esac >"$LOGS/$name.log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then echo "PASS $name"; else echo "FAIL $name (exit $rc)"; fi
}

passed=0
failed=0
tally() { # prints its input, counts PASS and FAIL lines, shows the log of each failure
  local line
  while read -r line; do
    echo "$line"
    case "$line" in
      PASS*) passed=$((passed + 1)) ;;
      FAIL*)
        failed=$((failed + 1))
        grep -v '^ *at ' "$LOGS/$(echo "$line" | awk '{print $2}').log" | tail -40 | sed 's/^/    /' || true
        ;;
    esac
  done
}

leader() { "$BIN/mqadmin" clusterList -n "$MULTI_PY" --leader-id; }

# Leadership to node $1 (n0 by default), retried while a restarted node catches up.
lead_n0() {
  local to=${1:-n0}
  for _ in $(seq 20); do
    [ "$(leader 2>/dev/null)" = "$to" ] && return 0
    "$BIN/mqadmin" leadershipTransfer -n "$MULTI_PY" --to "$to" >/dev/null 2>&1 || sleep 1
  done
  echo "sdk: cannot move leadership to $to" >&2
  return 1
}

failover() {
  local ready="$SDK_DIR/failover.ready" killed="$SDK_DIR/failover.killed" pids=() names=()
  rm -f "$ready".* "$killed"
  lead_n0
  for spec in "python-failover $MULTI_PY" "node-failover $NODE_ADDR" "rust-failover $MULTI_RS"; do
    set -- $spec
    sdk "$1" failover "$2" --seconds "$FAILOVER_S" --ready-file "$ready.$1" --killed-file "$killed" >"$LOGS/$1.verdict" &
    pids+=($!)
    names+=("$1")
  done
  for _ in $(seq 300); do
    [ -f "$ready.python-failover" ] && [ -f "$ready.node-failover" ] && [ -f "$ready.rust-failover" ] && break
    sleep 0.1
  done
  local id pid
  id=$(leader)
  pid=$(cat "$RAFTMQ_RUN_DIR/broker-$id.pid")
  echo "SIGKILL the leader $id (pid $pid) while the three SDKs send and receive"
  kill -KILL "$pid"
  touch "$killed"
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || true
    cat "$LOGS/${names[$i]}.verdict"
  done
}

# The three SDKs' transactional producers, whose four half messages each are sent before the
# leader is SIGKILLed and committed, rolled back and checked back after. A node asks only the
# producers whose Telemetry stream it holds, so each SDK must keep its stream on a node that
# lives; the leader killed is n2, which none of them is connected to:
# - Python, given the group's addresses, is connected to n0 (grpc-core takes the first). It
#   reopens a broken Telemetry stream only at its next settings sync, 300 s later, so with its
#   own node gone no check-back could reach it before then.
# - Node takes one address (n1, as everywhere here), so it cannot outlive its node. It does
#   reopen a broken Telemetry stream, a second after the break and again until it succeeds
#   (TelemetrySession on 'error'/'end'): with n1 SIGKILLed and started again, n1 asked it.
# - Rust is given one address too (n0), not the group's: rocketmq 5.0.0 opens one Telemetry
#   stream per session, when the session is created, and never reopens it (Session::start's
#   reader task just ends). Given the group's addresses, tonic's balancer puts that stream on a
#   node it picks at random; when that node died, the producer was never asked again ("not
#   settled in 90 s: delivered {commit}, checker asked []"), and its calls kept landing on the
#   dead node ("tcp connect error: Connection refused") too.
# These are SDK limits, not the group's: the check rounds go on from the new leader, and the
# clients' nodes ask their producers.
tx_failover() {
  local ready="$SDK_DIR/tx-failover.ready" killed="$SDK_DIR/tx-failover.killed" pids=() names=()
  local id pid
  rm -f "$ready".* "$killed"
  lead_n0 n2
  for spec in "python-transaction-failover $MULTI_PY" "node-transaction-failover $NODE_ADDR" \
    "rust-transaction-failover $SINGLE"; do
    set -- $spec
    sdk_tx "$1" "$2" --ready-file "$ready.$1" --killed-file "$killed" >"$LOGS/$1.verdict" &
    pids+=($!)
    names+=("$1")
  done
  for _ in $(seq 600); do
    [ -f "$ready.python-transaction-failover" ] && [ -f "$ready.node-transaction-failover" ] &&
      [ -f "$ready.rust-transaction-failover" ] && break
    sleep 0.1
  done
  id=$(leader)
  pid=$(cat "$RAFTMQ_RUN_DIR/broker-$id.pid")
  echo "SIGKILL the leader $id (pid $pid) between the half messages and their end"
  kill -KILL "$pid"
  touch "$killed"
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || true
    cat "$LOGS/${names[$i]}.verdict"
  done
}

# sdk_tx NAME ENDPOINT [ARGS...]: an SDK's transaction run; Node and Rust are told the check
# interval (for their watch of three intervals; the Python one does not take it).
sdk_tx() {
  local name=$1 endpoint=$2
  shift 2
  case "$name" in
    python-*) sdk "$name" transaction "$endpoint" "$@" ;;
    *) sdk "$name" transaction "$endpoint" --check-interval "$TX_CHECK_INTERVAL_S" "$@" ;;
  esac
}

group_conf() {
  mkdir -p "$GROUP_CONF"
  for n in n0 n1 n2; do
    {
      cat "conf/dledger/broker-$n.conf"
      echo "transactionTimeOut = $TX_TIMEOUT_MS"
      echo "transactionCheckInterval = $((TX_CHECK_INTERVAL_S * 1000))"
      echo "diskMaxUsedSpaceRatio = 95"
    } >"$GROUP_CONF/broker-$n.conf"
  done
}

cleanup() { bin/fast-try.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "install the SDKs: $PYTHON_SDK (PyPI), $(grep -o '"rocketmq-client-nodejs": "[^"]*"' tests/sdk/package.json) (npm), rocketmq $(grep -o '^rocketmq = "[^"]*"' tests/sdk/rust/Cargo.toml | cut -d'"' -f2) (crates.io)"
start=$SECONDS
install_python &
py_pid=$!
install_node &
node_pid=$!
build_rust
wait "$py_pid"
wait "$node_pid"
install_s=$((SECONDS - start))
echo "installed in ${install_s} s"
checks_start=$SECONDS

rm -rf /tmp/rmqstore/node00 /tmp/rmqstore/node01 /tmp/rmqstore/node02
group_conf
bin/fast-try.sh start >"$LOGS/fast-try.log" 2>&1 || { cat "$LOGS/fast-try.log"; exit 1; }

step "smoke with a single address ($SINGLE)"
tally < <(
  sdk python-single smoke "$SINGLE" &
  sdk node-single smoke "$SINGLE" &
  sdk rust-single smoke "$SINGLE" &
  wait
)

step "smoke with the group's addresses (Python '$MULTI_PY', Rust '$MULTI_RS'); Node refuses '$MULTI_PY' (its bug)"
tally < <(
  sdk python-multi smoke "$MULTI_PY" &
  sdk rust-multi smoke "$MULTI_RS" &
  sdk node-multi refuses-multi-address "$MULTI_PY" &
  wait
)

step "recall (Python): a delay message recalled before its time is never delivered"
tally < <(sdk python-recall recall "$MULTI_PY")

step "transactions (Python '$MULTI_PY', Node '$NODE_ADDR', Rust '$MULTI_RS'): commit, rollback and two check-backs"
tally < <(
  sdk_tx python-transaction "$MULTI_PY" &
  sdk_tx node-transaction "$NODE_ADDR" &
  sdk_tx rust-transaction "$MULTI_RS" &
  wait
)

step "transactions across a leader SIGKILL between the half messages and their end (Python '$MULTI_PY', Node '$NODE_ADDR', Rust '$SINGLE')"
tally < <(tx_failover)
# The killed node back (in this shell: a process substitution is not waited for), serving
# before the next step starts.
bin/fast-try.sh start >>"$LOGS/fast-try.log" 2>&1 || { tail -20 "$LOGS/fast-try.log"; exit 1; }

step "failover: leader SIGKILL while the three SDKs send and receive"
tally < <(failover)

grep -h "tally\|acked sends\|sends:" "$LOGS"/*-failover.log | sed 's/^/  /' || true
echo "sdk: install ${install_s} s, group and checks $((SECONDS - checks_start)) s; SDK logs in $LOGS"
echo "sdk: $passed passed, $failed failed"
[ "$failed" = 0 ]
