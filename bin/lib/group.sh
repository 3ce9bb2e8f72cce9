# shellcheck shell=bash
# The fast-try group helpers bin/bench.sh and bin/soak.sh share: building the binaries, refusing
# to start next to a group that is not theirs, starting and stopping fast-try, the brokers' PIDs.
#
# The sourcing script sets PORTS, NODES, OUT, BIN, BIN_GIVEN and RAFTMQ_RUN_DIR, defines `say`
# and `die`, and starts with STARTED=0. These set STARTED (1 while fast-try may run brokers of
# ours) and PIDS (the brokers' PIDs, comma-separated).

# The fast-try ports something already listens on, space-separated (empty: none).
ports_in_use() {
  local busy="" p
  for p in "${PORTS[@]}"; do
    if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
      busy="$busy $p"
    fi
  done
  echo "$busy"
}

# Dies when another broker group holds the fast-try ports: only groups started here are stopped.
refuse_if_busy() { # script-name
  local busy
  busy=$(ports_in_use)
  [ -z "$busy" ] || die "ports$busy are in use: another broker group runs (stop it first; $1 stops only groups it started)"
}

# Builds the release binaries unless RAFTMQ_BIN named them, and checks they are there.
build_binaries() {
  if [ -z "$BIN_GIVEN" ]; then
    say "building release binaries (cargo build --release --locked -p broker -p raftmq-tools --bins)"
    cargo build --release --locked -p broker -p raftmq-tools --bins >>"$OUT/build.log" 2>&1 || {
      tail -20 "$OUT/build.log" >&2
      die "build failed"
    }
  fi
  local b
  for b in mqbroker mqadmin mqbench; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing"
  done
}

# The PIDs of the brokers fast-try started, from its PID files.
read_pids() {
  # shellcheck disable=SC2034 # PIDS is the sourcing script's
  PIDS=$(for n in "${NODES[@]}"; do cat "$RAFTMQ_RUN_DIR/broker-$n.pid"; done | paste -sd,)
}

# Starts the group from the confs in a directory (fast-try waits for a leader and for every node
# to answer) and reads its PIDs.
group_up() { # conf-dir script-name
  refuse_if_busy "$2"
  STARTED=1
  if ! RAFTMQ_CONF_DIR="$1" bin/fast-try.sh start >>"$OUT/fast-try.log" 2>&1; then
    tail -20 "$OUT/fast-try.log" >&2
    die "the group did not start (logs: $RAFTMQ_RUN_DIR/broker-*.log)"
  fi
  read_pids
}

# Stops the group if this script started it.
group_stop() {
  if [ "$STARTED" = 1 ]; then
    bin/fast-try.sh stop >>"$OUT/fast-try.log" 2>&1 || true
    STARTED=0
  fi
}
