#!/usr/bin/env bash
# Stop the test cluster that start.sh brought up in STATE_DIR: SIGTERM to exactly the PIDs it
# recorded in STATE_DIR/pids (slurmd, slurmctld, then munged), SIGKILL to any still alive after
# 10 s, then remove the PID files. Never matches processes by name. With --clean it also
# deletes STATE_DIR. Exits 0 when nothing is left running.
#
#   tests/slurm_cluster/stop.sh STATE_DIR [--clean]
set -uo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || { [ $# = 2 ] && [ "$2" != --clean ]; }; then
  echo "usage: $0 STATE_DIR [--clean]" >&2
  exit 2
fi
state=$1
[ -d "$state/pids" ] || { [ "${2:-}" = --clean ] && rm -rf "$state"; exit 0; }

# a recorded PID is ours only while it still runs the daemon we started (PIDs get reused)
is_ours() {
  local pid=$1 name=$2 comm
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = "$name" ]
}

# jobs first: a running job's processes are children of slurmstepd, which slurmd started;
# scancel lets slurmd end them before the daemons go
if [ -f "$state/slurm.conf" ] && [ -f "$state/pids/slurmctld.pid" ] \
  && is_ours "$(cat "$state/pids/slurmctld.pid")" slurmctld; then
  SLURM_CONF="$state/slurm.conf" timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
  for _ in $(seq 20); do
    [ -z "$(SLURM_CONF="$state/slurm.conf" timeout 5 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
    sleep 0.5
  done
fi

status=0
for name in slurmd slurmctld munged; do
  f="$state/pids/$name.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if is_ours "$pid" "$name"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do is_ours "$pid" "$name" || break; sleep 0.1; done
    if is_ours "$pid" "$name"; then
      kill -KILL "$pid" 2>/dev/null
      sleep 0.2
      is_ours "$pid" "$name" && { echo "stop.sh: $name (pid $pid) survived SIGKILL" >&2; status=1; }
    fi
  fi
  rm -f "$f"
done

# the /etc/slurm/slurm.conf symlink start.sh made, if it still points into this state dir
if [ -f "$state/system-conf-link" ]; then
  link=$(cat "$state/system-conf-link")
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$(cd "$state" && pwd)/slurm.conf" ]; then
    rm -f "$link"
  fi
  rm -f "$state/system-conf-link"
fi

if [ "${2:-}" = --clean ] && [ $status = 0 ]; then
  rm -rf "$state"
fi
exit $status
