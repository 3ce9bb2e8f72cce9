#!/usr/bin/env bash
# RocketMQ 4.x remoting acceptance tests: PyPI rocketmq==0.4.4 (C++ core) and npm ali-ons@3.12.0.
# Usage: NAMESRV=127.0.0.1:9876 tests/sdk4/run.sh [smoke|failover] [client...]
#   clients: python node (default both). failover uses SECONDS_RUN (default 30).
# Needs python3 (venv) and node/npm. Does not start brokers: point NAMESRV at a running cluster.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
NAMESRV="${NAMESRV:-127.0.0.1:9876}"
MODE="${1:-smoke}"; shift || true
CLIENTS="${*:-python node}"
WORK="${SDK4_WORK:-${TMPDIR:-/tmp}/raftmq-sdk4}"
mkdir -p "$WORK"
export HOME="$(mktemp -d "$WORK/home.XXXXXX")"   # clients write logs under $HOME/logs
RUN_ID="$(date +%s)$$"
pass=0; fail=0

setup_python() {
  [ -x "$WORK/venv/bin/python" ] && "$WORK/venv/bin/python" -c 'import rocketmq.client' 2>/dev/null && return 0
  python3 -m venv "$WORK/venv" && "$WORK/venv/bin/pip" install -q rocketmq==0.4.4
}
setup_node() {
  mkdir -p "$WORK/node"
  if cmp -s "$HERE/node/package-lock.json" "$WORK/node/package-lock.json" && [ -d "$WORK/node/node_modules/ali-ons" ]; then
    return 0
  fi
  cp "$HERE/node/package.json" "$HERE/node/package-lock.json" "$WORK/node/"
  (cd "$WORK/node" && npm ci --no-audit --no-fund --silent)
}
run_one() {  # name, command...
  local name="$1"; shift
  echo "== $name"
  if timeout "${SDK4_TIMEOUT:-150}" "$@"; then pass=$((pass+1)); else fail=$((fail+1)); echo "!! $name FAILED"; fi
}
args() {  # client tag
  echo --namesrv "$NAMESRV" --topic "${SDK4_TOPIC:-SDK4_$1}" --group "SDK4_$1_$RUN_ID"
}
if [ "$MODE" = install ]; then  # install both clients, run nothing
  setup_python && setup_node && echo "sdk4: clients installed in $WORK"
  exit
fi
for c in $CLIENTS; do
  extra=(); [ "$MODE" = failover ] && extra=(--seconds "${SECONDS_RUN:-30}")
  case "$c" in
    python) if setup_python; then run_one "python $MODE" "$WORK/venv/bin/python" "$HERE/python/client4.py" "$MODE" $(args py) "${extra[@]}"
            else fail=$((fail+1)); echo "!! python setup failed"; fi ;;
    node)   if setup_node; then run_one "node $MODE" env NODE_PATH="$WORK/node/node_modules" node "$HERE/node/client4.js" "$MODE" $(args node) "${extra[@]}"
            else fail=$((fail+1)); echo "!! node setup failed"; fi ;;
    *) echo "unknown client $c"; fail=$((fail+1)) ;;
  esac
done
echo "sdk4: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
