#!/usr/bin/env bash
# RaftMQ soak benchmark (issue #9): memory, disk, snapshot and restart as the store fills.
# A benchmark, not a timed test: it prints figures and checks nothing.
#
#   bin/soak.sh                               5,000,000 × 1 KiB in 5 steps, no consumer until the end
#   CONSUMERS=keepup bin/soak.sh              a consumer group acks while the steps are sent
#   TOTAL=200000 STEPS=2 bin/soak.sh          a quick check that everything works (under a minute)
#
# On a fresh three-node fast-try group of its own (conf copies of conf/dledger with their own data
# dirs, its own RAFTMQ_RUN_DIR), it
#   1. sends TOTAL messages of SIZE bytes in STEPS equal steps with mqbench (4 connections × 8
#      requests of 16 messages: bench.sh's fastest publish workload, pub-1k-async-b16, ASYNC_FLUSH)
#      and prints after each step, per broker, RssAnon (/proc/<pid>/status) and the store dir's
#      size on disk (du), with the step's msgs/s and the consumer group's backlog;
#   2. prints each node's raft-log snapshot file (<store>/dledger-<id>/snapshot/current) or "none";
#   3. stops all three brokers (SIGTERM, SIGKILL after 10 s: bin/fast-try.sh stop), starts them on
#      the same confs and data, and measures the wall time from the start command to the first
#      SendMessage answered OK (a bounded loop of `mqadmin sendMessage`);
#   4. drains the backlog with 4 connections × 4 receivers, 32 messages a receive, batched acks
#      (bench.sh's consume-1k) and prints msgs/s;
#   5. forces a snapshot (SNAPSHOT=force): neither mqadmin nor the broker's APIs can ask for one, and
#      raft-log takes one only before retention deletes old data segments. So the group is
#      restarted once more with retention keys that make every non-active segment expired
#      (fileReservedTime=0, deleteWhen=every hour, cleanResourceInterval=1000) and the snapshot
#      files are read once every node has one. That needs at least two data segments per node
#      (the active one is never deleted): with the default 1 GiB segments about a million
#      messages of 1 KiB; for a small run set SEGMENT_BYTES. Otherwise the output says "none" and
#      why. That retention deletes the old segments, so this comes last;
#   6. prints one markdown table of every figure and writes them to $SOAK_OUT/soak.json.
# Only brokers this script started are ever signalled (fast-try's PID files); when any fast-try
# port is taken it refuses to start. Every wait is bounded in count and time; the group is stopped
# on exit and on Ctrl-C, and its data dirs are deleted (KEEP_DATA=1 keeps them).
#
# Environment:
#   TOTAL          messages to send (default 5000000); each step sends TOTAL/STEPS, rounded down to
#                  a multiple of 16 (the batch)
#   STEPS          steps (default 5): the figures are read after each
#   SIZE           message body in bytes (default 1024)
#   CONSUMERS      backlog (default): nothing consumes until step 4; keepup: a consumer group
#                  (4 × 4 receivers) runs during the sends, so the backlog stays small
#   SOAK_OUT       where the report, JSON and logs go (default target/soak/<UTC time>)
#   RAFTMQ_BIN     the binaries (default target/release; built here with cargo unless set)
#   SOAK_DATA      parent of the data dirs node00..node02 (default /tmp/rmqstore/soak; must lie under
#                  /tmp/rmqstore/, it is wiped before the run and, unless KEEP_DATA=1, after it)
#   SNAPSHOT       force (default: step 5) or look: only read the snapshot files (step 2)
#   SEGMENT_BYTES  mappedFileSizeForEntryData of the soak confs (default: unset, raft-log's 1 GiB;
#                  it must hold the largest entry, 8 MiB + 48 B: e.g. 67108864 for a small run)
#   STEP_MAX_S     bound of one send step, seconds (default 900)
#   DRAIN_MAX_S    bound of the drain, and of keepup's wait for its consumer (default 900)
#   RESTART_MAX_S  bound of the restart probe loop, seconds (default 60)
#   KEEP_DATA      1: keep the data dirs after the run (default 0)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TOTAL=${TOTAL:-5000000}
STEPS=${STEPS:-5}
SIZE=${SIZE:-1024}
CONSUMERS=${CONSUMERS:-backlog}
SNAPSHOT=${SNAPSHOT:-force}
SEGMENT_BYTES=${SEGMENT_BYTES:-}
STEP_MAX_S=${STEP_MAX_S:-900}
DRAIN_MAX_S=${DRAIN_MAX_S:-900}
RESTART_MAX_S=${RESTART_MAX_S:-60}
KEEP_DATA=${KEEP_DATA:-0}
DATA=${SOAK_DATA:-/tmp/rmqstore/soak}
OUT=${SOAK_OUT:-$ROOT/target/soak/$(date -u +%Y%m%dT%H%M%SZ)}
BIN_GIVEN=${RAFTMQ_BIN:-}
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
NODES=(n0 n1 n2)
PORTS=(30911 30921 30931 40911 40912 40913)
ADDRS="127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931"
TOPIC=SoakTest
GROUP=SoakConsumer
PROBE_TOPIC=SoakRestartProbe
BATCH=16
PROBE_TRIES_MAX=3000  # restart probe: at most this many sends (and RESTART_MAX_S seconds)
PROBE_PAUSE_S=0.02
SNAPSHOT_WAIT_S=60    # forced snapshot: how long to wait for every node's file
IDLE_S=3

export RAFTMQ_RUN_DIR="$OUT/run"
export RAFTMQ_BIN="$BIN"

say() { echo "soak: $*" >&2; }
die() {
  say "$*"
  exit 1
}

for v in TOTAL STEPS SIZE STEP_MAX_S DRAIN_MAX_S RESTART_MAX_S; do
  if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then die "$v=${!v} is not a positive whole number"; fi
done
[ -z "$SEGMENT_BYTES" ] || [[ $SEGMENT_BYTES =~ ^[0-9]+$ ]] || die "SEGMENT_BYTES=$SEGMENT_BYTES is not a whole number"
[ "$SIZE" -le $((4 << 20)) ] || die "SIZE=$SIZE exceeds the broker's maxMessageSize (4 MiB)"
case "$CONSUMERS" in keepup | backlog) ;; *) die "CONSUMERS=$CONSUMERS: use keepup or backlog" ;; esac
case "$SNAPSHOT" in force | look) ;; *) die "SNAPSHOT=$SNAPSHOT: use force or look" ;; esac
case "$DATA" in
  /tmp/rmqstore/?*) ;;
  *) die "SOAK_DATA=$DATA is not under /tmp/rmqstore/; refusing to wipe it" ;;
esac
STEP_COUNT=$((TOTAL / STEPS / BATCH * BATCH))
[ "$STEP_COUNT" -ge "$BATCH" ] || die "TOTAL=$TOTAL is too small for STEPS=$STEPS (each step needs at least $BATCH messages)"
PLANNED=$((STEP_COUNT * STEPS))
command -v python3 >/dev/null || die "python3 is needed for the report"
command -v timeout >/dev/null || die "timeout (coreutils) is needed to bound every client call"

# ---- the group --------------------------------------------------------------------------------

STARTED=0   # 1 while fast-try may have brokers of ours running
STARTER=""  # a background `fast-try.sh start` (the restart measurement)
KEEPUP=""   # the background keepup consumer
CHILD=""    # a background mqbench step or drain
WIPE=0      # 1 once the data dirs are ours to delete
PIDS=""

# shellcheck source=bin/lib/group.sh
. "$ROOT/bin/lib/group.sh"

# Conf copies of conf/dledger in $OUT/<name>: data in $DATA/node0X, ASYNC_FLUSH, plus "$@" lines.
make_confs() { # name extra-lines...
  local name=$1 dir="$OUT/$1" i n
  shift
  mkdir -p "$dir"
  for i in "${!NODES[@]}"; do
    n=${NODES[$i]}
    grep -Ev '^[[:space:]]*(storePathRootDir|storePathCommitLog|flushDiskType|mappedFileSizeForEntryData|mappedFileSizeCommitLog)[[:space:]]*[=:]' \
      "conf/dledger/broker-$n.conf" >"$dir/broker-$n.conf"
    {
      echo "storePathRootDir = $DATA/node0$i"
      echo "flushDiskType = ASYNC_FLUSH"
      [ -z "$SEGMENT_BYTES" ] || echo "mappedFileSizeForEntryData = $SEGMENT_BYTES"
      local line
      for line in "$@"; do echo "$line"; done
    } >>"$dir/broker-$n.conf"
  done
}

# Starts the group from the confs in $OUT/<conf-name>.
group_start() { # conf-name
  group_up "$OUT/$1" soak.sh
}

cleanup() {
  local rc=$?
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  if [ -n "$KEEPUP" ] && kill -0 "$KEEPUP" 2>/dev/null; then
    kill -TERM "$KEEPUP" 2>/dev/null || true
    wait "$KEEPUP" 2>/dev/null || true
  fi
  if [ -n "$STARTER" ] && kill -0 "$STARTER" 2>/dev/null; then
    kill -TERM "$STARTER" 2>/dev/null || true
    wait "$STARTER" 2>/dev/null || true
  fi
  group_stop
  if [ "$WIPE" = 1 ] && [ "$KEEP_DATA" != 1 ]; then
    rm -rf "${DATA:?}"/node00 "${DATA:?}"/node01 "${DATA:?}"/node02
    rmdir "$DATA" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- figures ----------------------------------------------------------------------------------

# One JSON object per line in $OUT/facts.jsonl: {"key": ..., "value": ...}; the report reads them.
fact() { # key json-value
  printf '{"key": "%s", "value": %s}\n' "$1" "$2" >>"$OUT/facts.jsonl"
}

jget() { # json key [key...] -> the value (numbers as they are, null as "")
  python3 - "$@" <<'PY'
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2:]:
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)
PY
}

store_dir() { echo "$DATA/node0$1/dledger-${NODES[$1]}"; }

snapshot_bytes() { # node-index -> bytes of snapshot/current, or "none"
  local f
  f="$(store_dir "$1")/snapshot/current"
  if [ -f "$f" ]; then stat -c %s "$f"; else echo none; fi
}

data_segments() { # node-index -> number of data segment files
  find "$(store_dir "$1")/data" -maxdepth 1 -type f 2>/dev/null | wc -l
}

# Per broker: pid, RssAnon and VmRSS (kB), store dir on disk (KiB), snapshot file, as JSON.
nodes_json() {
  local i pid first=1 anon rss store snap
  printf '['
  for i in "${!NODES[@]}"; do
    pid=$(cut -d, -f$((i + 1)) <<<"$PIDS")
    anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    store=$(du -sk "$DATA/node0$i" 2>/dev/null | cut -f1)
    snap=$(snapshot_bytes "$i")
    [ "$snap" = none ] && snap=null
    [ "$first" = 1 ] || printf ','
    first=0
    printf '{"node": "%s", "pid": %s, "rss_anon_kib": %s, "rss_kib": %s, "store_kib": %s, "snapshot_bytes": %s}' \
      "${NODES[$i]}" "$pid" "${anon:-null}" "${rss:-null}" "${store:-null}" "$snap"
  done
  printf ']'
}

print_nodes() { # nodes-json
  python3 - "$1" <<'PY' >&2
import json, sys
for n in json.loads(sys.argv[1]):
    mib = lambda k: "-" if n[k] is None else f"{n[k] / 1024:,.1f} MiB"
    print(f"soak:   {n['node']} (pid {n['pid']}): RssAnon {mib('rss_anon_kib')}, "
          f"VmRSS {mib('rss_kib')}, store on disk {mib('store_kib')}")
PY
}

# The group's backlog: mqadmin consumerProgress's "Consume Diff Total", or "" if it cannot tell.
backlog() {
  timeout --foreground 30 "$BIN/mqadmin" -n "$ADDRS" --timeout 10 consumerProgress -g "$GROUP" -t "$TOPIC" 2>/dev/null |
    sed -n 's/^Consume Diff Total: //p' || true
}

# mqbench with a hard bound; its JSON report in $OUT/<name>.json. It runs in the background and
# is waited for, so that a signal to this script is handled at once (cleanup stops it).
mqbench() { # name bound-s args...
  local name=$1 bound=$2 rc=0
  shift 2
  echo "$BIN/mqbench $* -n '$ADDRS' --json" >>"$OUT/commands.txt"
  timeout --foreground -k 10 "$bound" "$BIN/mqbench" "$@" -n "$ADDRS" --json \
    >"$OUT/$name.json" 2>>"$OUT/mqbench.log" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  if [ "$rc" != 0 ] || [ ! -s "$OUT/$name.json" ]; then
    say "$name: mqbench exited $rc (see $OUT/mqbench.log)"
    echo "{\"failed\": \"mqbench exited $rc\"}" >"$OUT/$name.json"
    return 1
  fi
}

# ---- 1. the steps -----------------------------------------------------------------------------

run_steps() {
  local s sent=0 report ok rate errors nodes lag
  for s in $(seq 1 "$STEPS"); do
    say "step $s/$STEPS: sending $STEP_COUNT messages of $SIZE bytes (bound ${STEP_MAX_S}s)"
    if mqbench "step-$s" $((STEP_MAX_S + 60)) producer -t "$TOPIC" -q 8 -s "$SIZE" \
      --connections 4 --inflight 8 --batch "$BATCH" --count "$STEP_COUNT" --duration "$STEP_MAX_S" \
      --broker-pids "$PIDS"; then
      report=$(cat "$OUT/step-$s.json")
      ok=$(jget "$report" ok)
      rate=$(jget "$report" msgs_per_s)
      errors=$(jget "$report" errors)
    else
      ok=0 rate=null errors=null report=null
    fi
    sent=$((sent + ok))
    nodes=$(nodes_json)
    lag=$(backlog)
    printf '{"step": %s, "ok": %s, "sent_total": %s, "msgs_per_s": %s, "errors": %s, "backlog": %s, "nodes": %s}\n' \
      "$s" "$ok" "$sent" "$rate" "$errors" "${lag:-null}" "$nodes" >>"$OUT/steps.jsonl"
    say "step $s/$STEPS: $ok sent (total $sent) at $(printf '%.0f' "${rate/null/0}") msgs/s, errors ${errors/null/-}, backlog ${lag:--}"
    print_nodes "$nodes"
    [ "$ok" -ge "$STEP_COUNT" ] || say "step $s sent fewer than $STEP_COUNT messages (errors or the ${STEP_MAX_S}s bound)"
    if [ "$CONSUMERS" = keepup ] && [ -n "$lag" ] && [ "$lag" -gt $((STEP_COUNT / 10)) ]; then
      say "step $s: the keepup consumer is behind by $lag messages (more than a tenth of a step)"
    fi
  done
  SENT=$sent
  fact sent "$SENT"
}

# keepup: one consumer for the whole run, bounded by the planned count and by time.
keepup_start() {
  local bound=$((STEPS * STEP_MAX_S + DRAIN_MAX_S))
  echo "$BIN/mqbench consumer ... --count $PLANNED --duration $bound (keepup, background)" >>"$OUT/commands.txt"
  timeout --foreground -k 10 $((bound + 60)) "$BIN/mqbench" consumer -n "$ADDRS" -t "$TOPIC" -g "$GROUP" \
    --connections 4 --inflight 4 --batch 32 --count "$PLANNED" --duration "$bound" --json \
    >"$OUT/keepup.json" 2>>"$OUT/mqbench.log" &
  KEEPUP=$!
  say "keepup consumer started (pid $KEEPUP, group $GROUP, until $PLANNED acked or ${bound}s)"
}

# After the sends: wait (bounded) until the keepup consumer has acked its count; if some sends
# failed it never will, so it is stopped once the backlog is 0 (its report is then lost).
keepup_finish() {
  local t0 lag rc=0
  t0=$(date +%s)
  while kill -0 "$KEEPUP" 2>/dev/null && [ $(($(date +%s) - t0)) -lt "$DRAIN_MAX_S" ]; do
    lag=$(backlog)
    if [ "$SENT" -lt "$PLANNED" ] && [ "${lag:-1}" = 0 ]; then
      say "keepup: backlog 0 but only $SENT of $PLANNED sent; stopping the consumer (pid $KEEPUP)"
      kill -TERM "$KEEPUP" 2>/dev/null || true
      break
    fi
    sleep 1
  done
  if kill -0 "$KEEPUP" 2>/dev/null; then
    say "keepup: the consumer still runs after ${DRAIN_MAX_S}s; stopping it (pid $KEEPUP)"
    kill -TERM "$KEEPUP" 2>/dev/null || true
  fi
  wait "$KEEPUP" || rc=$?
  KEEPUP=""
  if [ "$rc" = 0 ] && [ -s "$OUT/keepup.json" ]; then
    fact keepup "$(cat "$OUT/keepup.json")"
    say "keepup consumer: $(jget "$(cat "$OUT/keepup.json")" ok) acked at $(printf '%.0f' "$(jget "$(cat "$OUT/keepup.json")" msgs_per_s)") msgs/s"
  else
    say "keepup consumer: no report (exit $rc; see $OUT/mqbench.log)"
    fact keepup null
  fi
}

# ---- 2. snapshot --------------------------------------------------------------------------------

snapshot_look() { # key
  local i v out="{" first=1
  for i in "${!NODES[@]}"; do
    v=$(snapshot_bytes "$i")
    [ "$first" = 1 ] || out="$out, "
    first=0
    if [ "$v" = none ]; then out="$out\"${NODES[$i]}\": null"; else out="$out\"${NODES[$i]}\": $v"; fi
    if [ "$v" = none ]; then
      say "  ${NODES[$i]}: $(store_dir "$i")/snapshot/current: none"
    else
      say "  ${NODES[$i]}: $(store_dir "$i")/snapshot/current: $v bytes"
    fi
  done
  fact "$1" "$out}"
}

# ---- 3. restart ---------------------------------------------------------------------------------

restart_measure() {
  local t0 t1 t_stop tries=0 ok=0 rc=0 busy
  timeout --foreground 30 "$BIN/mqadmin" -n "$ADDRS" --timeout 10 updateTopic -t "$PROBE_TOPIC" -w 1 >>"$OUT/mqadmin.log" 2>&1 ||
    say "could not create $PROBE_TOPIC up front; the first probe will create it"
  say "restart: stopping the group (SIGTERM, SIGKILL after 10 s)"
  t_stop=$(date +%s%N)
  group_stop
  fact stop_ms $((($(date +%s%N) - t_stop) / 1000000))
  busy=$(ports_in_use)
  [ -z "$busy" ] || die "ports$busy are still taken after the stop"
  say "restart: starting it on the same confs and data; sending one message at a time until one is acknowledged"
  t0=$(date +%s%N)
  STARTED=1
  RAFTMQ_CONF_DIR="$OUT/conf" bin/fast-try.sh start >>"$OUT/fast-try.log" 2>&1 &
  STARTER=$!
  while [ "$tries" -lt "$PROBE_TRIES_MAX" ] && [ $((($(date +%s%N) - t0) / 1000000000)) -lt "$RESTART_MAX_S" ]; do
    tries=$((tries + 1))
    if timeout --foreground 5 "$BIN/mqadmin" -n "$ADDRS" --timeout 1 sendMessage -t "$PROBE_TOPIC" -p "soak restart probe $tries" \
      >>"$OUT/probe.log" 2>&1; then
      t1=$(date +%s%N)
      ok=1
      break
    fi
    sleep "$PROBE_PAUSE_S"
  done
  wait "$STARTER" || rc=$?
  STARTER=""
  [ "$rc" = 0 ] || {
    tail -20 "$OUT/fast-try.log" >&2
    die "the restarted group did not come up (fast-try exited $rc)"
  }
  read_pids
  if [ "$ok" = 1 ]; then
    RESTART_MS=$(((t1 - t0) / 1000000))
    say "restart: first acknowledged send after $RESTART_MS ms ($tries sends tried)"
    fact restart "{\"ms\": $RESTART_MS, \"tries\": $tries}"
  else
    say "restart: no send acknowledged within ${RESTART_MAX_S}s / $PROBE_TRIES_MAX tries"
    fact restart "{\"ms\": null, \"tries\": $tries}"
  fi
}

# ---- 4. drain -----------------------------------------------------------------------------------

# The count is the backlog read before the restart (the probe sends go to another topic): a node
# that has just restarted answers consumerProgress before it has replayed its log (seen: lags of
# 9,000 to 60,000 in the first 0.3 s on a group that had acked everything). Its first answer is
# recorded as backlog_after_restart.
drain() {
  local lag count report
  lag=$(backlog)
  fact backlog_after_restart "${lag:-null}"
  count=${BACKLOG_BEFORE:-$SENT}
  if [ -z "$BACKLOG_BEFORE" ]; then say "drain: no backlog was read before the restart; draining the $SENT sent"; fi
  if [ "$count" -le 0 ]; then
    say "drain: backlog 0, nothing to drain (first answer after the restart: ${lag:--})"
    fact drain null
    return
  fi
  say "drain: consuming $count messages (4 × 4 receivers, batch 32, bound ${DRAIN_MAX_S}s)"
  if mqbench drain $((DRAIN_MAX_S + 60)) consumer -t "$TOPIC" -g "$GROUP" --connections 4 \
    --inflight 4 --batch 32 --count "$count" --duration "$DRAIN_MAX_S" --broker-pids "$PIDS"; then
    report=$(cat "$OUT/drain.json")
    say "drain: $(jget "$report" ok) acked at $(printf '%.0f' "$(jget "$report" msgs_per_s)") msgs/s, errors $(jget "$report" errors)"
  fi
  fact drain "$(cat "$OUT/drain.json")"
  lag=$(backlog)
  fact backlog_after_drain "${lag:-null}"
}

# ---- 5. forced snapshot -------------------------------------------------------------------------

snapshot_force() {
  local i few="" t0 all seg
  for i in "${!NODES[@]}"; do
    seg=$(data_segments "$i")
    [ "$seg" -ge 2 ] || few="$few ${NODES[$i]}($seg)"
  done
  if [ -n "$few" ]; then
    say "snapshot: not forced: nodes with one data segment:$few; raft-log never deletes the active"
    say "  segment, so retention takes no snapshot (set SEGMENT_BYTES below the data size per node)"
    fact snapshot_forced "{\"why_none\": \"one data segment on$few (retention never deletes the active segment)\"}"
    return
  fi
  say "snapshot: restarting with fileReservedTime=0, deleteWhen=every hour, cleanResourceInterval=1000"
  make_confs conf-retention "fileReservedTime = 0" \
    "deleteWhen = 00;01;02;03;04;05;06;07;08;09;10;11;12;13;14;15;16;17;18;19;20;21;22;23" \
    "cleanResourceInterval = 1000"
  group_stop
  group_start conf-retention
  t0=$(date +%s)
  while [ $(($(date +%s) - t0)) -lt "$SNAPSHOT_WAIT_S" ]; do
    all=1
    for i in "${!NODES[@]}"; do
      [ "$(snapshot_bytes "$i")" != none ] || all=0
    done
    [ "$all" = 0 ] || break
    sleep 1
  done
  sleep 1 # a node may write its file twice in a row
  local nodes
  nodes=$(nodes_json)
  say "snapshot after retention (waited $(($(date +%s) - t0)) s, bound ${SNAPSHOT_WAIT_S}s):"
  snapshot_look snapshot_forced_bytes
  fact snapshot_forced "{\"nodes\": $nodes, \"segments_after\": [$(data_segments 0), $(data_segments 1), $(data_segments 2)]}"
  group_stop
}

# ---- the run ------------------------------------------------------------------------------------

mkdir -p "$OUT"
: >"$OUT/commands.txt"
: >"$OUT/facts.jsonl"
: >"$OUT/steps.jsonl"
build_binaries
refuse_if_busy soak.sh
# The broker refuses writes above diskMaxUsedSpaceRatio (75 %): refuse a run that would get there.
mkdir -p "$DATA"
read -r fs_size fs_used < <(df -Pk "$DATA" | awk 'NR == 2 {print $2, $3}')
need_kib=$((PLANNED * (SIZE + 512) * 3 / 1024 + 3 * 1200 * 1024))
[ $(((fs_used + need_kib) * 100 / fs_size)) -lt 75 ] ||
  die "the run needs about $((need_kib / 1024 / 1024)) GiB in $DATA; that would fill its file system past 75 %"
WIPE=1
rm -rf "${DATA:?}"/node00 "${DATA:?}"/node01 "${DATA:?}"/node02
make_confs conf
fact config "{\"total\": $TOTAL, \"steps\": $STEPS, \"step_count\": $STEP_COUNT, \"size\": $SIZE, \"consumers\": \"$CONSUMERS\", \"batch\": $BATCH, \"connections\": 4, \"inflight\": 8, \"flush\": \"ASYNC_FLUSH\", \"segment_bytes\": ${SEGMENT_BYTES:-null}, \"snapshot\": \"$SNAPSHOT\", \"data\": \"$DATA\"}"

T0=$(date +%s)
say "$PLANNED messages of $SIZE bytes in $STEPS steps, CONSUMERS=$CONSUMERS; output in $OUT"
group_start conf
sleep "$IDLE_S"
idle=$(nodes_json)
fact idle "$idle"
say "fresh group after ${IDLE_S}s (pids $PIDS):"
print_nodes "$idle"
timeout --foreground 30 "$BIN/mqadmin" -n "$ADDRS" --timeout 10 updateTopic -t "$TOPIC" -w 8 >>"$OUT/mqadmin.log" 2>&1 ||
  die "could not create $TOPIC (see $OUT/mqadmin.log)"

if [ "$CONSUMERS" = keepup ]; then keepup_start; fi
run_steps
if [ "$CONSUMERS" = keepup ]; then keepup_finish; fi
BACKLOG_BEFORE=$(backlog)
fact backlog_after_sends "${BACKLOG_BEFORE:-null}"

say "snapshot files after the sends:"
snapshot_look snapshot_after_sends_bytes

restart_measure
drain
if [ "$SNAPSHOT" = force ]; then
  snapshot_force
else
  fact snapshot_forced '{"why_none": "SNAPSHOT=look"}'
fi
group_stop
say "done in $(($(date +%s) - T0)) s"

# ---- the table ----------------------------------------------------------------------------------

python3 - "$OUT" <<'PY'
import json, os, sys

out = sys.argv[1]
facts = {}
with open(os.path.join(out, "facts.jsonl")) as f:
    for line in f:
        if line.strip():
            d = json.loads(line)
            facts[d["key"]] = d["value"]
with open(os.path.join(out, "steps.jsonl")) as f:
    steps = [json.loads(line) for line in f if line.strip()]
cfg = facts["config"]
names = ["n0", "n1", "n2"]

def mib(kib):
    return "-" if kib is None else f"{kib / 1024:,.1f}"

def per_node(nodes, key, fmt=mib):
    by = {n["node"]: n.get(key) for n in nodes or []}
    return [fmt(by.get(name)) for name in names]

def num(v, spec=",.0f"):
    return "-" if v is None else format(v, spec)

def snap(v):
    return "none" if v is None else f"{v:,} B"

rows = []
def row(figure, cells, group="", target=""):
    rows.append([figure] + list(cells) + [group, target])

blank = ["", "", ""]
row("RssAnon MiB, fresh group", per_node(facts.get("idle"), "rss_anon_kib"))
for s in steps:
    row(f"RssAnon MiB after step {s['step']} ({s['sent_total']:,} sent)", per_node(s["nodes"], "rss_anon_kib"))
if len(steps) >= 2:
    first, last = steps[0]["nodes"], steps[-1]["nodes"]
    a = {n["node"]: n["rss_anon_kib"] for n in first}
    b = {n["node"]: n["rss_anon_kib"] for n in last}
    growth = [mib(b[n] - a[n]) if a.get(n) is not None and b.get(n) is not None else "-" for n in names]
    row(f"RssAnon growth MiB, step 1 → step {len(steps)}", growth, "",
        "< 16 MiB per broker from 1 to 5 million")
for s in steps:
    row(f"store on disk MiB after step {s['step']}", per_node(s["nodes"], "store_kib"))
for s in steps:
    lag = s.get("backlog")
    row(f"send msgs/s, step {s['step']} ({s['ok']:,} ok, {num(s.get('errors'))} errors)", blank,
        num(s.get("msgs_per_s")) + ("" if lag is None else f" (backlog after: {lag:,})"))
after = facts.get("snapshot_after_sends_bytes") or {}
row("snapshot after the sends", [snap(after.get(n)) for n in names])
forced = facts.get("snapshot_forced") or {}
if "why_none" in forced:
    row("snapshot after the drain, forced by retention", ["none"] * 3, forced["why_none"],
        "< 1 MiB for one group that acked everything")
else:
    fb = facts.get("snapshot_forced_bytes") or {}
    row("snapshot after the drain, forced by retention", [snap(fb.get(n)) for n in names],
        "segments left: " + "/".join(str(x) for x in forced.get("segments_after", [])),
        "< 1 MiB for one group that acked everything")
restart = facts.get("restart") or {}
row("restart → first acknowledged send, ms", blank,
    num(restart.get("ms")) + f" ({restart.get('tries')} sends tried; stop took {num(facts.get('stop_ms'))} ms)",
    "≤ 2,000 ms")
keepup = facts.get("keepup")
if cfg["consumers"] == "keepup":
    row("consume msgs/s while sending (keepup, 4 × 4, batch 32)", blank,
        "no report" if not keepup else f"{num(keepup['msgs_per_s'])} ({keepup['ok']:,} acked, {keepup['errors']} errors)")
def backlog_row(figure, key):
    v = facts.get(key)
    row(figure, blank, "-" if v is None else f"{v:,}")

backlog_row("backlog before the restart", "backlog_after_sends")
backlog_row("backlog, first answer after the restart", "backlog_after_restart")
drain = facts.get("drain")
if not drain:
    drained = "nothing to drain"
elif "failed" in drain:
    drained = drain["failed"]
else:
    drained = f"{num(drain['msgs_per_s'])} ({drain['ok']:,} acked, {drain['errors']} errors)"
row("consume msgs/s, drain after the restart (4 × 4, batch 32)", blank, drained)
if drain:
    backlog_row("backlog after the drain", "backlog_after_drain")

report = {"config": cfg, "steps": steps, **{k: v for k, v in facts.items() if k != "config"}}
with open(os.path.join(out, "soak.json"), "w") as f:
    json.dump(report, f, indent=1)

print()
print(f"RaftMQ soak: {cfg['steps']} steps × {cfg['step_count']:,} messages of {cfg['size']} B, "
      f"CONSUMERS={cfg['consumers']}, {cfg['flush']}, "
      f"{cfg['connections']} × {cfg['inflight']} requests of {cfg['batch']} messages; three replicas on one machine")
head = ["figure", "n0", "n1", "n2", "group", "issue #9 target"]
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" for _ in head) + "|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
print("RssAnon is the broker's own memory (/proc/<pid>/status); the store is du of its data dir.")
print(f"JSON: {out}/soak.json; commands: {out}/commands.txt; logs: {out}/")
PY
