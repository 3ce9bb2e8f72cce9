#!/usr/bin/env bash
# The chaos matrix: every fault on its own run (3 nodes; 5 for bridge and the majorities ring),
# then one table of lost / unexpected / duplicated / order / recovery per run.
#
#   bin/chaos-matrix.sh                     # every fault, 5 minutes each (DURATION=300)
#   DURATION=60 FAULTS="leader-kill bridge" bin/chaos-matrix.sh
#
# Runs as root (network namespaces, loop-mounted disks for power loss). Run directories go to
# $STORE (default store/chaos-matrix/<fault>/<timestamp>); the table to $STORE/table.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-300}
INTERVAL=${INTERVAL:-10}
RECOVERY=${RECOVERY:-10}
SEED=${SEED:-$RANDOM}
STORE=${STORE:-$ROOT/store/chaos-matrix}
FAULTS=${FAULTS:-"leader-kill random-kill minor-kill major-kill fixed-kill
  leader-suspend random-suspend minor-suspend major-suspend fixed-suspend
  random-partition leader-partition leader-majority-partition fixed-partition
  random-partition-oneway leader-partition-oneway bridge partition-majorities-ring
  random-loss minor-loss random-delay leader-delay
  leader-power-loss minor-power-loss all-power-loss mixed
  ordered:leader-partition ordered:leader-kill consumer-restart:leader-kill
  transactional:leader-kill transactional:leader-partition transactional:mixed"}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
cargo build --release --locked -p broker -p chaos --bins >&2
mkdir -p "$STORE"
rows=()
for spec in $FAULTS; do
  workload=queue
  fault=$spec
  case $spec in *:*) workload=${spec%%:*}; fault=${spec#*:} ;; esac
  nodes=3
  case $fault in bridge*|partition-majorities-ring*) nodes=5 ;; esac
  store="$STORE/${workload}-${fault}"
  echo "== $workload / $fault ($nodes nodes, ${DURATION}s, seed $SEED)" >&2
  code=0
  "$BIN/chaos" run -t "$DURATION" -i "$INTERVAL" --recovery-time "$RECOVERY" --nodes "$nodes" \
    --nemesis "$fault" -w "$workload" --seed "$SEED" --broker "$BIN/mqbroker" \
    --store "$store" > "$store.log" 2>&1 || code=$?
  tail -4 "$store.log" >&2
  rows+=("$workload|$fault|$nodes|$code|$store/latest/results.json")
done
python3 - "$STORE/table.md" "${rows[@]}" <<'PY'
import json, sys
out, rows = sys.argv[1], sys.argv[2:]
lines = ["| workload | fault | nodes | valid | enqueue ok / unknown / fail | lost | unexpected | duplicated | acked-then-redelivered | failed-but-delivered | order | recovery p50 / p99 ms | windows unavailable / never recovered |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for row in rows:
    workload, fault, nodes, code, path = row.split("|")
    try:
        r = json.load(open(path))
    except Exception as e:
        lines.append(f"| {workload} | {fault} | {nodes} | harness error (exit {code}) | | | | | | | | | |")
        continue
    q = r["checkers"]["queue"]; a = r["checkers"]["availability"]; o = r["checkers"].get("order")
    order = "n/a" if o is None else f'{json.dumps(o["valid"])} ({o["violation_count"]} violations)'
    fmt = lambda v: "-" if v is None else f"{v:.0f}"
    valid = json.dumps(r["valid"]).strip('"')
    lines.append(f'| {workload} | {fault} | {nodes} | {valid} | {q["enqueue_ok_count"]} / {q["enqueue_info_count"]} / {q["enqueue_fail_count"]} | {q["lost"]["count"]} | {q["unexpected"]["count"]} | {q["duplicated"]["count"]} | {q.get("acked_then_redelivered", {}).get("count", "-")} | {q["failed_but_delivered"]["count"]} | {order} | {fmt(a["recovery_ms_p50"])} / {fmt(a["recovery_ms_p99"])} | {a["unavailable_window_count"]} / {a["unrecovered_window_count"]} |')
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
