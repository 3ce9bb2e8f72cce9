#!/usr/bin/env bash
# RaftMQ two-group cluster: a NameServer (conf/two-groups/namesrv.conf, 127.0.0.1:9876) and two
# three-node Raft groups of one cluster, RaftCluster, from conf/two-groups/:
#
#   group     listenPorts              Raft peers     data under
#   broker-a  30911 30921 30931        40911-40913    /tmp/rmqstore/broker-a-n{0,1,2}
#   broker-b  31911 31921 31931        41911-41913    /tmp/rmqstore/broker-b-n{0,1,2}
#
# Every node registers at the NameServer under its group's brokerName (the Raft leader as
# brokerId 0), so a RocketMQ 4.x producer spreads a topic created on both groups over both, and
# carries on with one group when the other loses its majority.
#
#   bin/two-groups.sh start    build release binaries if needed, start mqnamesrv and six mqbroker,
#                              wait for a leader in each group, for every node to answer and for
#                              both groups to be listed with a master at the NameServer
#   bin/two-groups.sh stop     stop what this script started (PID files; TERM, then KILL after 10 s)
#   bin/two-groups.sh status   which processes run, each group as mqadmin clusterList sees it, and
#                              the groups the NameServer lists
#
# Only processes recorded in its own PID files are ever signalled. A start refuses to run beside
# something else that holds one of these ports. The ports are read from the conf files
# (listenPort, and the dLegerPeers entry of dLegerSelfId).
#
# Environment: RAFTMQ_RUN_DIR (PID files and logs, default .two-groups), RAFTMQ_BIN (default
# target/release), RAFTMQ_CONF_DIR (namesrv.conf and broker-{a,b}-n{0,1,2}.conf, default
# conf/two-groups), RAFTMQ_LEADER_WAIT_S (default 30).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN_DIR=${RAFTMQ_RUN_DIR:-$ROOT/.two-groups}
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
CONF_DIR=${RAFTMQ_CONF_DIR:-conf/two-groups}
LEADER_WAIT_S=${RAFTMQ_LEADER_WAIT_S:-30}
STOP_GRACE_S=10
GROUPS_=(broker-a broker-b)
NODES=(n0 n1 n2)
NAMESRV_HOST=127.0.0.1

say() { echo "two-groups: $*"; }
# shellcheck source=bin/lib/procs.sh
. "$ROOT/bin/lib/procs.sh"
die() {
  echo "two-groups: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start|stop|status" >&2
  exit 1
}

# The ports of one node of a group, by node index.
port_of() { # group index
  local ports
  read -ra ports <<<"${PORTS[$1]}"
  echo "${ports[$2]}"
}

# The group's listen endpoints as mqadmin -n takes them.
endpoints() { # group
  local p out=""
  for p in ${PORTS[$1]}; do
    out="$out;127.0.0.1:$p"
  done
  echo "${out#;}"
}

# The last value of a key in a conf file (`key = value` or `key=value`), empty when absent.
conf_value() { # file key
  sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1" | tail -n 1 | tr -d '[:space:]'
}

# Reads the ports from the conf files: PORTS and RAFT_PORTS by group (space-separated, by node
# number), NAMESRV_PORT.
read_conf() {
  [ -f "$CONF_DIR/namesrv.conf" ] || die "$CONF_DIR/namesrv.conf is missing"
  NAMESRV_PORT=$(conf_value "$CONF_DIR/namesrv.conf" listenPort)
  NAMESRV_PORT=${NAMESRV_PORT:-9876}
  declare -gA PORTS=() RAFT_PORTS=()
  local g n f port self peers raft
  for g in "${GROUPS_[@]}"; do
    for n in "${NODES[@]}"; do
      f="$CONF_DIR/$g-$n.conf"
      [ -f "$f" ] || die "$f is missing"
      port=$(conf_value "$f" listenPort)
      self=$(conf_value "$f" dLegerSelfId)
      peers=$(conf_value "$f" dLegerPeers)
      raft=$(tr ';' '\n' <<<"$peers" | sed -n "s/^$self-.*:\([0-9]*\)$/\1/p")
      if [ -z "$port" ] || [ -z "$raft" ]; then
        die "$f: no listenPort, or no dLegerPeers entry for its dLegerSelfId"
      fi
      PORTS[$g]="${PORTS[$g]:-} $port"
      RAFT_PORTS[$g]="${RAFT_PORTS[$g]:-} $raft"
    done
  done
}


# Whether the process of a PID file of ours runs.
ours_running() { # pidfile [program]
  [ -f "$1" ] && alive "$(cat "$1")" "${2:-mqbroker}"
}

# Dies when something that is not ours listens on one of the ports this cluster needs.
refuse_busy_ports() {
  local busy="" g i p
  if ! ours_running "$RUN_DIR/namesrv.pid" mqnamesrv && listening "$NAMESRV_PORT"; then
    busy="$busy $NAMESRV_PORT"
  fi
  for g in "${GROUPS_[@]}"; do
    for i in "${!NODES[@]}"; do
      ours_running "$RUN_DIR/$g-${NODES[$i]}.pid" && continue
      local raft
      read -ra raft <<<"${RAFT_PORTS[$g]}"
      for p in "$(port_of "$g" "$i")" "${raft[$i]}"; do
        listening "$p" && busy="$busy $p"
      done
    done
  done
  [ -z "$busy" ] || die "ports$busy are in use by processes this script did not start (fast-try or another cluster?); stop them first"
}

listening() { # port
  ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

build() {
  local need=0 b
  for b in mqbroker mqadmin mqnamesrv; do
    [ -x "$BIN/$b" ] || need=1
  done
  if [ "$need" = 0 ] && [ -n "$(find broker raft-log proto -newer "$BIN/mqbroker" -name '*.rs' -o -newer "$BIN/mqbroker" -name '*.proto' 2>/dev/null | head -1)" ]; then
    need=1
  fi
  if [ "$need" = 1 ]; then
    say "building release binaries (cargo build --release -p broker -p raftmq-tools -p raftmq-namesrv --bins)"
    cargo build --release --locked -p broker -p raftmq-tools -p raftmq-namesrv --bins
  fi
}

start_namesrv() {
  local pidfile="$RUN_DIR/namesrv.pid"
  if ours_running "$pidfile" mqnamesrv; then
    say "mqnamesrv already runs (pid $(cat "$pidfile"))"
    return
  fi
  nohup "$BIN/mqnamesrv" -c "$CONF_DIR/namesrv.conf" >"$RUN_DIR/namesrv.log" 2>&1 &
  echo $! >"$pidfile"
  local booted=0
  for _ in $(seq 1 50); do
    if grep -q "boot success" "$RUN_DIR/namesrv.log" 2>/dev/null; then
      booted=1
      break
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "two-groups: mqnamesrv exited; the end of $RUN_DIR/namesrv.log:" >&2
      tail -n 5 "$RUN_DIR/namesrv.log" | sed 's/^/  /' >&2
      exit 1
    fi
    sleep 0.1
  done
  [ "$booted" = 1 ] || die "mqnamesrv (pid $(cat "$pidfile")) did not boot within 5 s; see $RUN_DIR/namesrv.log"
  say "started mqnamesrv (pid $(cat "$pidfile"), listenPort $NAMESRV_PORT, log $RUN_DIR/namesrv.log)"
}

start_brokers() {
  local g i n pidfile
  for g in "${GROUPS_[@]}"; do
    for i in "${!NODES[@]}"; do
      n=$g-${NODES[$i]}
      pidfile="$RUN_DIR/$n.pid"
      if ours_running "$pidfile"; then
        say "broker $n already runs (pid $(cat "$pidfile"))"
        continue
      fi
      nohup "$BIN/mqbroker" -c "$CONF_DIR/$n.conf" >"$RUN_DIR/$n.log" 2>&1 &
      echo $! >"$pidfile"
      say "started broker $n (pid $!, listenPort $(port_of "$g" "$i"), log $RUN_DIR/$n.log)"
    done
  done
}

# Every process still runs; otherwise names the one that exited with the end of its log.
all_alive_or_die() {
  local g n pid
  pid=$(cat "$RUN_DIR/namesrv.pid")
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "two-groups: mqnamesrv (pid $pid) exited; the end of $RUN_DIR/namesrv.log:" >&2
    tail -n 5 "$RUN_DIR/namesrv.log" | sed 's/^/  /' >&2
    die "start failed; stop the others with: $0 stop"
  fi
  for g in "${GROUPS_[@]}"; do
    for n in "${NODES[@]}"; do
      pid=$(cat "$RUN_DIR/$g-$n.pid")
      # kill -0, not alive(): a child forked a moment ago may not have exec'd mqbroker yet.
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "two-groups: broker $g-$n (pid $pid) exited; the end of $RUN_DIR/$g-$n.log:" >&2
        tail -n 5 "$RUN_DIR/$g-$n.log" | sed 's/^/  /' >&2
        die "start failed; stop the others with: $0 stop"
      fi
    done
  done
}

# A leader needs only two nodes: a group is healthy only when each of its brokers also answers
# on its own listenPort.
wait_group() { # group
  local g=$1 i port ok
  say "waiting up to ${LEADER_WAIT_S}s for a leader in $g ..."
  if ! "$BIN/mqadmin" clusterList -n "$(endpoints "$g")" --wait-leader "$LEADER_WAIT_S" >/dev/null; then
    all_alive_or_die
    die "no leader in $g after ${LEADER_WAIT_S}s; see $RUN_DIR/$g-n*.log"
  fi
  for i in "${!NODES[@]}"; do
    port=$(port_of "$g" "$i")
    ok=0
    for _ in $(seq 1 $((LEADER_WAIT_S * 2))); do
      all_alive_or_die
      if "$BIN/mqadmin" clusterList -n "127.0.0.1:$port" >/dev/null 2>&1; then
        ok=1
        break
      fi
      sleep 0.5
    done
    [ "$ok" = 1 ] || die "broker $g-${NODES[$i]} runs but does not answer on 127.0.0.1:$port; stop with: $0 stop"
  done
}

# GET_BROKER_CLUSTER_INFO (106) at the NameServer, over bash's /dev/tcp: prints the body, the
# ClusterInfo JSON. A remoting frame is int32 length, int32 header length (high byte 0: JSON),
# the JSON header, the body.
cluster_info() {
  local header='{"code":106,"language":"OTHER","version":435,"opaque":1,"flag":0,"extFields":{}}'
  local header_len=${#header}
  be32() { printf '\\%03o\\%03o\\%03o\\%03o' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
  # shellcheck disable=SC2016 # the inner script expands its own positional parameters
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "$2$3%s" "$4" >&3
    read_u32() { head -c 4 <&3 | od -An -tu1 | awk "{ print (\$1*16777216)+(\$2*65536)+(\$3*256)+\$4 }"; }
    total=$(read_u32); header_len=$(read_u32)
    [ -n "$total" ] && [ -n "$header_len" ] || exit 1
    head -c "$header_len" <&3 >/dev/null
    head -c "$((total - 4 - header_len))" <&3
  ' "$NAMESRV_HOST" "$NAMESRV_PORT" "$(be32 $((4 + header_len)))" "$(be32 "$header_len")" "$header"
}

# Prints "<group> <master address> <node count>" for a group the NameServer lists.
namesrv_group() { # info group
  local addrs master count
  addrs=$(grep -o "\"brokerName\":\"$2\",\"brokerAddrs\":{[^}]*}" <<<"$1" | sed 's/.*"brokerAddrs"://') || return 1
  master=$(grep -o '"0":"[^"]*"' <<<"$addrs" | cut -d'"' -f4) || master="none"
  count=$(grep -o '"[0-9]*":"' <<<"$addrs" | wc -l)
  echo "$2 master=$master nodes=$count"
}

wait_namesrv() {
  local info g ok line
  say "waiting up to ${LEADER_WAIT_S}s for both groups to be listed with a master at the NameServer ..."
  for _ in $(seq 1 $((LEADER_WAIT_S * 2))); do
    all_alive_or_die
    info=$(cluster_info 2>/dev/null || true)
    ok=1
    for g in "${GROUPS_[@]}"; do
      line=$(namesrv_group "$info" "$g" || true)
      [[ $line == *"nodes=3"* && $line != *"master=none"* ]] || ok=0
    done
    if [ "$ok" = 1 ]; then
      for g in "${GROUPS_[@]}"; do
        say "NameServer lists $(namesrv_group "$info" "$g")"
      done
      return
    fi
    sleep 0.5
  done
  die "the NameServer does not list both groups with a master and three nodes after ${LEADER_WAIT_S}s: ${info:-no answer}"
}

start() {
  build
  mkdir -p "$RUN_DIR"
  refuse_busy_ports
  start_namesrv
  start_brokers
  local g
  for g in "${GROUPS_[@]}"; do
    wait_group "$g"
  done
  wait_namesrv
  cat <<MSG

RaftMQ cluster RaftCluster is up: groups broker-a and broker-b, registered at the NameServer
$NAMESRV_HOST:$NAMESRV_PORT. RocketMQ 4.x applications: set namesrvAddr to $NAMESRV_HOST:$NAMESRV_PORT; a
topic created on both groups is spread over both.

Create a topic on both groups (any node of a group forwards to its leader):
  $BIN/mqadmin updateTopic -n $NAMESRV_HOST:$NAMESRV_PORT -c RaftCluster -t TopicTest
Cluster and group state:
  $BIN/mqadmin clusterList -n $NAMESRV_HOST:$NAMESRV_PORT
  $BIN/mqadmin clusterList -n "$(endpoints broker-a)"
  $BIN/mqadmin clusterList -n "$(endpoints broker-b)"
Stop:
  bin/two-groups.sh stop
MSG
}


stop() {
  local any=0 g n
  for g in "${GROUPS_[@]}"; do
    for n in "${NODES[@]}"; do
      stop_pid "broker $g-$n" "$RUN_DIR/$g-$n.pid" mqbroker && any=1
    done
  done
  stop_pid mqnamesrv "$RUN_DIR/namesrv.pid" mqnamesrv && any=1
  [ "$any" = 1 ] || say "nothing of this two-group cluster is running"
}

status() {
  local g i n info
  for g in "${GROUPS_[@]}"; do
    for i in "${!NODES[@]}"; do
      n=$g-${NODES[$i]}
      if ours_running "$RUN_DIR/$n.pid"; then
        echo "broker $n: running (pid $(cat "$RUN_DIR/$n.pid"), listenPort $(port_of "$g" "$i"))"
      else
        echo "broker $n: stopped"
      fi
    done
  done
  if ours_running "$RUN_DIR/namesrv.pid" mqnamesrv; then
    echo "mqnamesrv: running (pid $(cat "$RUN_DIR/namesrv.pid"), listenPort $NAMESRV_PORT)"
    info=$(cluster_info 2>/dev/null || true)
    for g in "${GROUPS_[@]}"; do
      echo "NameServer: $(namesrv_group "$info" "$g" || echo "$g not listed")"
    done
  else
    echo "mqnamesrv: stopped"
  fi
  if [ -x "$BIN/mqadmin" ]; then
    for g in "${GROUPS_[@]}"; do
      echo "== $g"
      "$BIN/mqadmin" clusterList -n "$(endpoints "$g")" || true
    done
  fi
}

[ $# -ge 1 ] || usage
read_conf
case "$1" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
