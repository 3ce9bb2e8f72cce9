#!/usr/bin/env bash
# RaftMQ fast-try: a NameServer (conf/namesrv.conf, port 9876) and a local three-node broker
# group from conf/dledger/broker-n{0,1,2}.conf, laid out like RocketMQ's bin/dledger/fast-try.sh
# (listen ports 30911/30921/30931, Raft peers 40911-40913, group RaftNode00, data under
# /tmp/rmqstore/node0X).
#
#   bin/fast-try.sh start    build release binaries if needed, start mqnamesrv and three mqbroker,
#                            wait for a leader
#   bin/fast-try.sh stop     stop what this script started (PID files; TERM, then KILL after 10 s)
#   bin/fast-try.sh status   which brokers run, and the group as mqadmin clusterList sees it
#   bin/fast-try.sh restart NODE...
#                            a rolling restart: each NODE (n0, n1, n2) in turn gets SIGTERM (a
#                            leader hands leadership off first), is started again, and is waited
#                            for until the group has a leader and the node serves
#
# Only processes recorded in its own PID files are ever signalled.
#
# Environment: RAFTMQ_RUN_DIR (PID files and logs, default .fast-try), RAFTMQ_BIN (binaries to
# run as they are; default target/release, built first when missing or older than the sources),
# RAFTMQ_CONF_DIR (where broker-n{0,1,2}.conf are read, default conf/dledger),
# RAFTMQ_LEADER_WAIT_S (default 30).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN_DIR=${RAFTMQ_RUN_DIR:-$ROOT/.fast-try}
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
BIN_GIVEN=${RAFTMQ_BIN:+1}
NODES=(n0 n1 n2)
PORTS=(30911 30921 30931)
STOP_GRACE_S=10
LEADER_WAIT_S=${RAFTMQ_LEADER_WAIT_S:-30}
CONF_DIR=${RAFTMQ_CONF_DIR:-conf/dledger}
# shellcheck source=bin/lib/procs.sh
. "$ROOT/bin/lib/procs.sh"
say() { echo "fast-try: $*"; }

usage() {
  echo "usage: $0 start|stop|status|restart NODE..." >&2
  exit 1
}

check_conf() {
  for n in "${NODES[@]}"; do
    if [ ! -f "$CONF_DIR/broker-$n.conf" ]; then
      echo "fast-try: $CONF_DIR/broker-$n.conf is missing" >&2
      exit 1
    fi
  done
}


NAMESRV_PORT=9876

start_namesrv() {
  local pidfile="$RUN_DIR/namesrv.pid"
  if [ -f "$pidfile" ] && alive "$(cat "$pidfile")" mqnamesrv; then
    echo "fast-try: mqnamesrv already runs (pid $(cat "$pidfile"))"
    return
  fi
  nohup "$BIN/mqnamesrv" -c conf/namesrv.conf >"$RUN_DIR/namesrv.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 50); do
    grep -q "boot success" "$RUN_DIR/namesrv.log" 2>/dev/null && break
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "fast-try: mqnamesrv exited; the end of $RUN_DIR/namesrv.log:" >&2
      tail -n 5 "$RUN_DIR/namesrv.log" | sed 's/^/  /' >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "fast-try: started mqnamesrv (pid $(cat "$pidfile"), listenPort $NAMESRV_PORT, log $RUN_DIR/namesrv.log)"
}


build() {
  local need=0
  for b in mqbroker mqadmin mqnamesrv; do
    [ -x "$BIN/$b" ] && continue
    # Binaries someone named are run as they are: never rebuilt, and missing ones are an error.
    if [ -n "$BIN_GIVEN" ]; then echo "fast-try: RAFTMQ_BIN=$BIN has no executable $b" >&2; exit 1; fi
    need=1
  done
  [ -n "$BIN_GIVEN" ] && return 0
  if [ "$need" = 0 ] && [ -n "$(find broker raft-log proto -newer "$BIN/mqbroker" -name '*.rs' -o -newer "$BIN/mqbroker" -name '*.proto' 2>/dev/null | head -1)" ]; then
    need=1
  fi
  if [ "$need" = 1 ]; then
    echo "fast-try: building release binaries (cargo build --release -p broker -p raftmq-tools -p raftmq-namesrv --bins)"
    cargo build --release --locked -p broker -p raftmq-tools -p raftmq-namesrv --bins
  fi
}

# conf_value FILE KEY DEFAULT: a key's value in a broker.conf (last one wins, as the broker reads it)
conf_value() {
  local v
  v=$(sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1" | tail -1 | tr -d '[:space:]')
  echo "${v:-$3}"
}

# The brokers refuse sends while their disk is fuller than diskMaxUsedSpaceRatio (RocketMQ's
# default 75): say so up front instead of leaving a newcomer with refused sends.
check_disk() {
  local n conf dir ratio used
  for n in "${NODES[@]}"; do
    conf="$CONF_DIR/broker-$n.conf"
    dir=$(conf_value "$conf" storePathRootDir "$HOME/store")
    ratio=$(conf_value "$conf" diskMaxUsedSpaceRatio 75)
    while [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done
    used=$(df --output=pcent "$dir" | tail -1 | tr -dc '0-9')
    if [ -n "$used" ] && [ "$used" -gt "$ratio" ]; then
      say "warning: the disk of $dir is ${used}% full, above diskMaxUsedSpaceRatio=$ratio in $conf: broker $n will refuse sends (free space, or raise the key, at most 95)" >&2
    fi
  done
}

# The dashboard and metrics of the nodes whose conf sets metricsExporterType=PROM.
http_urls() {
  local n conf urls=""
  for n in "${NODES[@]}"; do
    conf="$CONF_DIR/broker-$n.conf"
    if [ "$(conf_value "$conf" metricsExporterType DISABLE)" = PROM ]; then
      urls+="  http://127.0.0.1:$(conf_value "$conf" metricsPromExporterPort 5557)/  (broker $n: dashboard; /metrics, /health/ready)"$'\n'
    fi
  done
  [ -n "$urls" ] && printf 'Dashboard and metrics:\n%s' "$urls"
  return 0
}

start() {
  check_conf
  check_disk
  build
  mkdir -p "$RUN_DIR"
  start_namesrv
  for i in "${!NODES[@]}"; do
    n=${NODES[$i]}
    pidfile="$RUN_DIR/broker-$n.pid"
    if [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; then
      echo "fast-try: broker $n already runs (pid $(cat "$pidfile"))"
      continue
    fi
    nohup "$BIN/mqbroker" -c "$CONF_DIR/broker-$n.conf" >"$RUN_DIR/broker-$n.log" 2>&1 &
    echo $! >"$pidfile"
    echo "fast-try: started broker $n (pid $!, listenPort ${PORTS[$i]}, log $RUN_DIR/broker-$n.log)"
  done
  echo "fast-try: waiting up to ${LEADER_WAIT_S}s for a leader ..."
  if ! "$BIN/mqadmin" clusterList -n "127.0.0.1:${PORTS[0]};127.0.0.1:${PORTS[1]};127.0.0.1:${PORTS[2]}" --wait-leader "$LEADER_WAIT_S"; then
    echo "fast-try: no leader after ${LEADER_WAIT_S}s; see $RUN_DIR/broker-*.log" >&2
    exit 1
  fi
  check_every_node_serves
  local http
  http=$(http_urls)
  cat <<MSG

RaftMQ group RaftNode00 is up, registered at the NameServer 127.0.0.1:$NAMESRV_PORT.
RocketMQ 4.x applications: set the NameServer address (namesrvAddr) to 127.0.0.1:$NAMESRV_PORT.
RocketMQ 5 SDKs: connect to one (or all) of
  127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931
Every node serves every request on both protocols; a follower forwards writes to the leader.

First message:
  $BIN/mqadmin sendMessage -n 127.0.0.1:30911 -t TopicTest -p "hello RaftMQ"
  $BIN/mqadmin consumeMessage -n 127.0.0.1:30921 -t TopicTest -g GroupTest -c 1
Group state:
  $BIN/mqadmin clusterList -n 127.0.0.1:30911
${http}Stop:
  bin/fast-try.sh stop
MSG
}

# A leader needs only two nodes: a start is healthy only when every broker still runs and
# answers on its own listenPort (a broker that could not bind its ports exits within a second).
check_every_node_serves() {
  local failed=0
  for i in "${!NODES[@]}"; do
    n=${NODES[$i]}
    pid=$(cat "$RUN_DIR/broker-$n.pid")
    local ok=0
    # kill -0, not alive(): a child this script forked a moment ago may not have exec'd
    # mqbroker yet (its cmdline is still the shell's), and its PID cannot have been reused.
    for _ in $(seq 1 $((LEADER_WAIT_S * 2))); do
      kill -0 "$pid" 2>/dev/null || break
      if "$BIN/mqadmin" clusterList -n "127.0.0.1:${PORTS[$i]}" >/dev/null 2>&1; then
        ok=1
        break
      fi
      sleep 0.5
    done
    if [ "$ok" = 0 ]; then
      failed=1
      if kill -0 "$pid" 2>/dev/null; then
        echo "fast-try: broker $n (pid $pid) runs but does not answer on 127.0.0.1:${PORTS[$i]}" >&2
      else
        echo "fast-try: broker $n (pid $pid) exited; the end of $RUN_DIR/broker-$n.log:" >&2
        tail -n 5 "$RUN_DIR/broker-$n.log" | sed 's/^/  /' >&2
      fi
    fi
  done
  if [ "$failed" = 1 ]; then
    echo "fast-try: start failed; stop the others with: bin/fast-try.sh stop" >&2
    exit 1
  fi
}

stop() {
  local any=0
  for n in "${NODES[@]}"; do
    stop_pid "broker $n" "$RUN_DIR/broker-$n.pid" mqbroker && any=1
  done
  stop_pid mqnamesrv "$RUN_DIR/namesrv.pid" mqnamesrv && any=1
  [ "$any" = 1 ] || echo "fast-try: nothing of this fast-try is running"
}

# restart NODE...: one node at a time, graceful stop, start, wait until it serves with a leader.
restart() {
  local n i pidfile started
  [ $# -ge 1 ] || usage
  for n in "$@"; do
    i=-1
    for k in "${!NODES[@]}"; do [ "${NODES[$k]}" = "$n" ] && i=$k; done
    [ "$i" -ge 0 ] || { echo "fast-try: restart: no node $n (n0, n1, n2)" >&2; exit 1; }
    pidfile="$RUN_DIR/broker-$n.pid"
    started=$(date +%s%N)
    stop_pid "broker $n" "$pidfile" mqbroker || say "broker $n was not running"
    nohup "$BIN/mqbroker" -c "$CONF_DIR/broker-$n.conf" >>"$RUN_DIR/broker-$n.log" 2>&1 &
    echo $! >"$pidfile"
    if ! "$BIN/mqadmin" clusterList -n "127.0.0.1:${PORTS[$i]}" --wait-leader "$LEADER_WAIT_S" >/dev/null; then
      echo "fast-try: broker $n restarted but serves no leader after ${LEADER_WAIT_S}s; see $RUN_DIR/broker-$n.log" >&2
      exit 1
    fi
    say "restarted broker $n (pid $(cat "$pidfile")) in $((($(date +%s%N) - started) / 1000000)) ms"
  done
}

status() {
  for i in "${!NODES[@]}"; do
    n=${NODES[$i]}
    pidfile="$RUN_DIR/broker-$n.pid"
    if [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; then
      echo "broker $n: running (pid $(cat "$pidfile"), listenPort ${PORTS[$i]})"
    else
      echo "broker $n: stopped"
    fi
  done
  if [ -f "$RUN_DIR/namesrv.pid" ] && alive "$(cat "$RUN_DIR/namesrv.pid")" mqnamesrv; then
    echo "mqnamesrv: running (pid $(cat "$RUN_DIR/namesrv.pid"), listenPort $NAMESRV_PORT)"
  else
    echo "mqnamesrv: stopped"
  fi
  if [ -x "$BIN/mqadmin" ]; then
    "$BIN/mqadmin" clusterList -n "127.0.0.1:${PORTS[0]};127.0.0.1:${PORTS[1]};127.0.0.1:${PORTS[2]}" || true
  fi
}

[ $# -ge 1 ] || usage
case "$1" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart) shift; restart "$@" ;;
  *) usage ;;
esac
