#!/usr/bin/env bash
# RaftMQ benchmark matrix (issue #5): fresh fast-try groups, mqbench, one table at the end.
#
#   bin/bench.sh                      the whole matrix, RUNS=3 times each, medians
#   RUNS=1 bin/bench.sh               once each (a quick check that everything works)
#   WORKLOADS="pub-1k-async consume-1k" bin/bench.sh    a subset
#
# Each run gets a fresh three-node group (bin/fast-try.sh with its own RAFTMQ_RUN_DIR and conf
# copies that set flushDiskType), started after wiping the data directories the confs name, and
# stopped after the run. Only brokers this script started are ever signalled (fast-try's PID
# files); when any fast-try port is already taken it refuses to start rather than touch a group
# it did not start.
#
# Environment:
#   RUNS        runs per workload (default 3); the table shows medians, [min-max] for msgs/s
#   DURATION    measured seconds per run (default 15)
#   WARMUP      seconds of load before measuring (default 2)
#   IDLE_S      seconds a fresh group idles before its idle RSS is read (default 3)
#   WORKLOADS   space-separated subset of: pub-1k-async pub-128-async pub-1k-c1 pub-1k-sync
#               consume-1k pub-1k-async-b16 (16 messages per SendMessage: the protocol allows
#               it, the SDKs do not do it; shows the broker without per-request overhead)
#               consume-1k (default: these), and the same over RocketMQ 4.x remoting instead of
#               gRPC (mqbench --protocol remoting: SEND_MESSAGE_V2, PULL_MESSAGE + offset commits):
#               pub-1k-async-rm pub-128-async-rm pub-1k-c1-rm consume-1k-rm
#   BENCH_OUT   where JSON reports and logs go (default target/bench/<UTC time>)
#   RAFTMQ_BIN  the binaries (default target/release; built here with cargo unless set)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-3}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-2}
IDLE_S=${IDLE_S:-3}
DEFAULT_WORKLOADS="pub-1k-async pub-128-async pub-1k-c1 pub-1k-sync consume-1k pub-1k-async-b16"
REMOTING_WORKLOADS="pub-1k-async-rm pub-128-async-rm pub-1k-c1-rm consume-1k-rm"
ALL_WORKLOADS="$DEFAULT_WORKLOADS $REMOTING_WORKLOADS"
WORKLOADS=${WORKLOADS:-$DEFAULT_WORKLOADS}
OUT=${BENCH_OUT:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
BIN_GIVEN=${RAFTMQ_BIN:-}
BIN=${RAFTMQ_BIN:-$ROOT/target/release}
NODES=(n0 n1 n2)
PORTS=(30911 30921 30931 40911 40912 40913)
ADDRS="127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931"

export RAFTMQ_RUN_DIR="$OUT/run"
export RAFTMQ_BIN="$BIN"

say() { echo "bench: $*" >&2; }
die() {
  say "$*"
  exit 1
}

for v in RUNS DURATION WARMUP IDLE_S; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v} is not a whole number"
done
[ "$RUNS" -ge 1 ] || die "RUNS must be at least 1"
[ "$DURATION" -ge 1 ] || die "DURATION must be at least 1"
for w in $WORKLOADS; do
  [[ " $ALL_WORKLOADS " == *" $w "* ]] || die "unknown workload $w (known: $ALL_WORKLOADS)"
done
command -v python3 >/dev/null || die "python3 is needed to summarize the runs"

# ---- the group --------------------------------------------------------------------------------

STARTED=0
PIDS=""

# shellcheck source=bin/lib/group.sh
. "$ROOT/bin/lib/group.sh"

# The storePathRootDir of every conf in $1; each must look like a fast-try data dir.
data_dirs() {
  local dir=$1 n d
  for n in "${NODES[@]}"; do
    d=$(sed -n 's/^[[:space:]]*storePathRootDir[[:space:]]*[=:][[:space:]]*//p' "$dir/broker-$n.conf" | tail -1 | tr -d '[:space:]')
    case "$d" in
      /tmp/rmqstore/*) echo "$d" ;;
      *) die "$dir/broker-$n.conf: storePathRootDir '$d' is not under /tmp/rmqstore; refusing to wipe it" ;;
    esac
  done
}

# Conf copies of conf/dledger with flushDiskType set, in $OUT/conf-<policy>.
make_confs() {
  local policy=$1 dir="$OUT/conf-$1" n
  mkdir -p "$dir"
  for n in "${NODES[@]}"; do
    grep -v '^[[:space:]]*flushDiskType' "conf/dledger/broker-$n.conf" >"$dir/broker-$n.conf"
    echo "flushDiskType = $policy" >>"$dir/broker-$n.conf"
  done
}

# A fresh group: its data dirs wiped (only once no other group holds the ports), then started.
group_start() { # policy
  local conf="$OUT/conf-$1" dirs
  refuse_if_busy bench.sh
  dirs=$(data_dirs "$conf")
  # shellcheck disable=SC2086 # one path per line, none with spaces (checked above)
  rm -rf $dirs
  group_up "$conf" bench.sh
}
trap group_stop EXIT
trap 'exit 130' INT TERM

# VmRSS and RssAnon of the group's processes, as JSON.
rss_json() {
  local pid first=1
  printf '['
  for pid in ${PIDS//,/ }; do
    [ "$first" = 1 ] || printf ','
    first=0
    awk -v pid="$pid" '/^VmRSS:/ {r=$2} /^RssAnon:/ {a=$2} END {printf "{\"pid\":%s,\"rss_kib\":%d,\"rss_anon_kib\":%d}", pid, r, a}' "/proc/$pid/status"
  done
  printf ']\n'
}

# ---- workloads --------------------------------------------------------------------------------

# mqbench with the group's pids; appends its JSON report to $OUT/<name>.jsonl. A failed run is
# recorded as {"failed": ...} and the matrix goes on.
mqbench() { # name args...
  local name=$1 rc=0 report
  shift
  echo "$BIN/mqbench $* -n '$ADDRS' --broker-pids $PIDS --json" >>"$OUT/commands.txt"
  report=$("$BIN/mqbench" "$@" -n "$ADDRS" --broker-pids "$PIDS" --json 2>>"$OUT/mqbench.log") || rc=$?
  if [ "$rc" = 0 ] && [ -n "$report" ]; then
    echo "$report" >>"$OUT/$name.jsonl"
    echo "$report"
  else
    say "$name: mqbench exited $rc (see $OUT/mqbench.log)"
    echo "{\"failed\": \"mqbench exited $rc\"}" >>"$OUT/$name.jsonl"
    return 1
  fi
}

PRODUCE=(producer -t BenchmarkTest -q 8 --warmup "$WARMUP" --duration "$DURATION")

run_workload() { # name run
  local name=$1 run=$2 policy=ASYNC_FLUSH proto=()
  case "$name" in *-rm) proto=(--protocol remoting) ;; esac
  [ "$name" = pub-1k-sync ] && policy=SYNC_FLUSH
  group_start "$policy"
  sleep "$IDLE_S"
  rss_json >>"$OUT/idle-rss.jsonl"
  say "$name run $run/$RUNS ($policy, group pids $PIDS)"
  case "$name" in
    pub-1k-async | pub-1k-sync | pub-1k-async-rm) mqbench "$name" "${PRODUCE[@]}" "${proto[@]}" -s 1024 --connections 4 --inflight 64 >/dev/null || true ;;
    pub-128-async | pub-128-async-rm) mqbench "$name" "${PRODUCE[@]}" "${proto[@]}" -s 128 --connections 4 --inflight 64 >/dev/null || true ;;
    pub-1k-c1 | pub-1k-c1-rm) mqbench "$name" "${PRODUCE[@]}" "${proto[@]}" -s 1024 --connections 1 --inflight 1 >/dev/null || true ;;
    pub-1k-async-b16) mqbench "$name" "${PRODUCE[@]}" -s 1024 --connections 4 --inflight 8 --batch 16 >/dev/null || true ;;
    consume-1k | consume-1k-rm)
      # Fill the topic for DURATION seconds, then consume all of it (capped at 4 × DURATION).
      local fill count
      if fill=$(mqbench "$name-fill" "${PRODUCE[@]}" "${proto[@]}" -s 1024 --connections 4 --inflight 64); then
        count=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ok"])' "$fill")
        mqbench "$name" consumer "${proto[@]}" -t BenchmarkTest -g BenchmarkConsumer --connections 4 --inflight 4 \
          --batch 32 --count "$count" --duration $((DURATION * 4)) >/dev/null || true
      fi
      ;;
  esac
  group_stop
}

mkdir -p "$OUT"
: >"$OUT/commands.txt"
build_binaries
make_confs ASYNC_FLUSH
make_confs SYNC_FLUSH

T0=$(date +%s)
say "matrix: $WORKLOADS; $RUNS run(s) of ${WARMUP}s warmup + ${DURATION}s each; output in $OUT"
for run in $(seq 1 "$RUNS"); do
  for w in $WORKLOADS; do
    run_workload "$w" "$run"
  done
done
say "done in $(($(date +%s) - T0)) s"

# ---- the table --------------------------------------------------------------------------------

python3 - "$OUT" "$RUNS" "$IDLE_S" $WORKLOADS <<'PY'
import json, os, statistics, sys

out, runs, idle_s, workloads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
LABEL = {
    "pub-1k-async": ("publish 1 KiB, 4×64, ASYNC_FLUSH", "≥ 100,000 msgs/s, p99 ≤ 10 ms"),
    "pub-128-async": ("publish 128 B, 4×64, ASYNC_FLUSH", "≥ 200,000 msgs/s"),
    "pub-1k-c1": ("publish 1 KiB, concurrency 1", "p50 ≤ 0.25 ms, p99 ≤ 1 ms"),
    "pub-1k-sync": ("publish 1 KiB, 4×64, SYNC_FLUSH", "≥ 50,000 msgs/s"),
    "consume-1k": ("consume 1 KiB (batch 32, 4×4)", "≥ 300,000 msgs/s"),
    "pub-1k-async-b16": ("publish 1 KiB, 4×8 requests of 16 messages, ASYNC_FLUSH", "(reference: no SDK sends batches)"),
    "pub-1k-async-rm": ("remoting: publish 1 KiB, 4×64, ASYNC_FLUSH", "(4.x protocol)"),
    "pub-128-async-rm": ("remoting: publish 128 B, 4×64, ASYNC_FLUSH", "(4.x protocol)"),
    "pub-1k-c1-rm": ("remoting: publish 1 KiB, concurrency 1", "(4.x protocol)"),
    "consume-1k-rm": ("remoting: consume 1 KiB (pull 32)", "(4.x protocol)"),
}

def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def fmt(v, spec):
    return "-" if v is None else format(v, spec)

def mib(kib):
    return None if kib is None else kib / 1024

rows = []
for w in workloads:
    reports = [r for r in load(os.path.join(out, w + ".jsonl")) if "failed" not in r]
    failed = len(load(os.path.join(out, w + ".jsonl"))) - len(reports)
    label, target = LABEL[w]
    if not reports:
        rows.append((label, "-", "FAILED", "", "", "", "", "", "", "", "", target))
        continue
    rates = [r["msgs_per_s"] for r in reports]
    lat = lambda k: med([(r.get("latency") or {}).get(k) for r in reports])
    span = f" [{min(rates):,.0f}–{max(rates):,.0f}]" if len(rates) > 1 else ""
    rss = med([max((p.get("rss_max_kib") or 0) for p in r["broker_pids"]) for r in reports])
    anon = med([max((p.get("rss_anon_max_kib") or 0) for p in r["broker_pids"]) for r in reports])
    errors = sum(r["errors"] for r in reports)
    rows.append((
        label,
        reports[0].get("flush", "-").split(" ")[0],
        f"{med(rates):,.0f}{span}",
        fmt(med([r["mb_per_s"] for r in reports]), ".1f"),
        fmt(lat("p50_ms"), ".2f"),
        fmt(lat("p99_ms"), ".2f"),
        fmt(lat("p999_ms"), ".2f"),
        f"{errors}" + (f" (+{failed} failed runs)" if failed else ""),
        fmt(med([r.get("broker_cpu_us_per_msg") for r in reports]), ".1f"),
        fmt(med([r.get("client_cpu_us_per_msg") for r in reports]), ".1f"),
        f"{fmt(mib(rss), '.0f')} ({fmt(mib(anon), '.0f')})",
        target,
    ))

head = ("workload", "flush (broker's)", "msgs/s", "MB/s", "p50 ms", "p99 ms", "p99.9 ms", "errors",
        "broker µs/msg", "client µs/msg", "RSS max MiB (anon)", "target")
print()
print(f"RaftMQ mqbench matrix: median of {runs} run(s); three replicas on one machine; "
      "broker µs/msg = CPU of all three brokers per message")
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" for _ in head) + "|")
for row in rows:
    print("| " + " | ".join(row) + " |")

idle = load(os.path.join(out, "idle-rss.jsonl"))
if idle:
    rss = med([max(p["rss_kib"] for p in s) for s in idle])
    anon = med([max(p["rss_anon_kib"] for p in s) for s in idle])
    print(f"| broker RSS idle (fresh group after {idle_s} s, max of 3 nodes) "
          f"| | | | | | | | | | {mib(rss):.0f} ({mib(anon):.0f}) | ≤ 64 MiB idle, ≤ 256 MiB under load |")
print()
print("RSS counts mapped commitlog pages (page cache); anon is the process's own memory.")
print(f"Reports: {out}/*.jsonl; commands: {out}/commands.txt")
PY
