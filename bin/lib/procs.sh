# shellcheck shell=bash
# Process helpers bin/fast-try.sh and bin/two-groups.sh share. Only PIDs from the scripts' own
# PID files are ever signalled. The sourcing script defines `say` and sets STOP_GRACE_S.

# alive PID [PROGRAM]: 0 if PID runs and is one of our mqbroker (or PROGRAM) processes.
alive() {
  local pid=$1 program=${2:-mqbroker}
  kill -0 "$pid" 2>/dev/null && grep -q "$program" "/proc/$pid/cmdline" 2>/dev/null
}

# stop_pid NAME PIDFILE PROGRAM: TERM, then KILL after STOP_GRACE_S; removes the PID file.
# Returns 0 if it stopped something, 1 if nothing of ours ran.
stop_pid() {
  local name=$1 pidfile=$2 program=$3 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  local was=1
  if alive "$pid" "$program"; then
    was=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((STOP_GRACE_S * 10))); do
      alive "$pid" "$program" || break
      sleep 0.1
    done
    if alive "$pid" "$program"; then
      say "$name (pid $pid) ignored SIGTERM for ${STOP_GRACE_S}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
  return $was
}
