#!/usr/bin/env bash
# Bring up a single-node SLURM test cluster (Debian's slurmctld/slurmd 22.05 + munge) whose
# every file lives in STATE_DIR, so that it never touches /etc/slurm, /etc/munge or /run.
#
#   tests/slurm_cluster/start.sh STATE_DIR     # prints nothing on success but the env line
#   source STATE_DIR/env.sh                     # SLURM_CONF for sbatch/squeue/sinfo/snakemake
#   tests/slurm_cluster/stop.sh STATE_DIR
#
# STATE_DIR must be reachable by the `munge` user (munged runs as munge): a directory created
# directly under /tmp works; one inside pytest's 0700 basetemp does not.
# The daemons run in the foreground (-F/-D) as background children of this script; their PIDs
# are written to STATE_DIR/pids/*.pid, which stop.sh kills (never by process name).
# Exits 0 once `sinfo` shows the node idle; on failure it stops what it started and exits 1.
#
# Environment: RNARET_SLURM_PORTS="CTLD_PORT SLURMD_PORT" picks the ports (default: two free
# ports between 20000 and 40000); RNARET_SLURM_START_TIMEOUT seconds to wait (default 60).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
for bin in munged slurmctld slurmd sinfo scontrol setpriv; do
  command -v "$bin" >/dev/null || { echo "start.sh: $bin not found (install.sh installs it)" >&2; exit 3; }
done
if [ "$(id -u)" != 0 ]; then
  echo "start.sh: must run as root (slurmd and munged need it)" >&2
  exit 3
fi

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
state=$(cd "$1" && pwd)
if [ -e "$state/pids" ] && ls "$state"/pids/*.pid >/dev/null 2>&1; then
  echo "start.sh: $state/pids holds PIDs of a running cluster; run stop.sh first" >&2
  exit 1
fi
timeout_s=${RNARET_SLURM_START_TIMEOUT:-60}

mkdir -p "$state"/{pids,log,munge,munge-run,spool/ctld,spool/d,dev}
chmod 0755 "$state" "$state/log" "$state/dev"

# munged refuses keys that others can read and sockets in directories others cannot enter or
# can write: a fresh key in a private directory, the socket (and munged's own log, pid, seed)
# in a world-searchable one, both owned by munge; the munge user must be able to reach them.
chown munge:munge "$state/munge" "$state/munge-run"
chmod 0700 "$state/munge"
chmod 0755 "$state/munge-run"
if ! setpriv --reuid=munge --regid=munge --clear-groups test -x "$state/munge"; then
  echo "start.sh: user munge cannot reach $state (a parent directory is private); use a directory under /tmp" >&2
  exit 1
fi
dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$state/munge/munge.key"
chmod 0400 "$state/munge/munge.key"

# two fake GPU "device files": slurmd wants character devices (links to /dev/null do) and
# exports CUDA_VISIBLE_DEVICES from their trailing numbers, as on a real GPU node
ln -sfn /dev/null "$state/dev/fakegpu0"
ln -sfn /dev/null "$state/dev/fakegpu1"

if [ -n "${RNARET_SLURM_PORTS:-}" ]; then
  read -r ctld_port slurmd_port <<<"$RNARET_SLURM_PORTS"
else
  read -r ctld_port slurmd_port < <(python3 - <<'PY'
import random, socket
ports = []
while len(ports) < 2:
    p = random.randint(20000, 40000)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
    if p not in ports:
        ports.append(p)
print(*ports)
PY
)
fi

host=$(hostname -s)
# the node must be declared with exactly what slurmd detects, or slurmctld drains it
node_hw=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //')

cat >"$state/slurm.conf" <<EOF
# single-node test cluster written by tests/slurm_cluster/start.sh
ClusterName=rnaret-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$state/munge-run/munge.socket
StateSaveLocation=$state/spool/ctld
SlurmdSpoolDir=$state/spool/d
SlurmctldPidFile=$state/slurmctld.daemon.pid
SlurmdPidFile=$state/slurmd.daemon.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd, no cgroups in this container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
# finished jobs stay visible to squeue for MinJobAge seconds: Snakemake's status check
# (slurm-status-command: squeue) needs MinJobAge >= 3 x slurm-init-seconds-before-status-checks
# and above its longest poll interval (180 s); the tests look at every job of a run after the
# run (and after the local run that follows it), so the test cluster keeps them for 2 hours
MinJobAge=7200
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 $node_hw Gres=gpu:fake:2 State=UNKNOWN
# two partitions on the one node, as a cluster's CPU and GPU partitions: the tests check that
# each job went to the one its GPU count asks for
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
EOF

cat >"$state/gres.conf" <<EOF
NodeName=$host Name=gpu Type=fake File=$state/dev/fakegpu[0-1]
EOF

cat >"$state/env.sh" <<EOF
export SLURM_CONF=$state/slurm.conf
EOF
export SLURM_CONF="$state/slurm.conf"

# Snakemake's SLURM job step (snakemake-executor-plugin-slurm-jobstep) removes every SLURM_*
# variable, SLURM_CONF included, before its inner `srun`, which then only finds a config at the
# default path. So the default path must point here: a symlink, made only where no
# slurm.conf exists (a dangling one left by a killed run is replaced), removed by stop.sh.
sys_conf=/etc/slurm/slurm.conf
if [ -L "$sys_conf" ]; then
  # a link left by a test cluster that is gone (killed test run): its slurmctld no longer runs
  other=$(dirname "$(readlink "$sys_conf")")
  other_pid=$(cat "$other/pids/slurmctld.pid" 2>/dev/null || true)
  if [ "$other" != "$state" ] && { [ -z "$other_pid" ] || [ "$(cat "/proc/$other_pid/comm" 2>/dev/null)" != slurmctld ]; }; then
    rm -f "$sys_conf"
  fi
fi
if [ -e "$sys_conf" ] || [ -L "$sys_conf" ]; then
  if [ "$(readlink "$sys_conf")" != "$state/slurm.conf" ]; then
    echo "start.sh: $sys_conf exists (a real cluster's, or a running test cluster's: $(readlink "$sys_conf" || true))." >&2
    echo "          Jobs would use it: stop that test cluster (stop.sh ITS_STATE_DIR) or use a machine without SLURM configuration." >&2
    exit 1
  fi
else
  mkdir -p "$(dirname "$sys_conf")"
  ln -s "$state/slurm.conf" "$sys_conf"
fi
echo "$sys_conf" >"$state/system-conf-link"

started=()
cleanup_on_failure() {
  echo "start.sh: cluster did not come up; last log lines:" >&2
  tail -n 20 "$state"/log/* "$state"/munge-run/munged.log >&2 || true
  "$here/stop.sh" "$state" >&2 || true
}
trap 'cleanup_on_failure' ERR

# children must not die with this script: setsid detaches them from our process group
setsid setpriv --reuid=munge --regid=munge --clear-groups \
  munged -F --key-file="$state/munge/munge.key" --socket="$state/munge-run/munge.socket" \
  --pid-file="$state/munge-run/munged.pid" --log-file="$state/munge-run/munged.log" \
  --seed-file="$state/munge/munged.seed" </dev/null >>"$state/log/munged.out" 2>&1 &
echo $! >"$state/pids/munged.pid"

for _ in $(seq 50); do [ -S "$state/munge-run/munge.socket" ] && break; sleep 0.1; done
[ -S "$state/munge-run/munge.socket" ] || { echo "start.sh: munged did not create its socket" >&2; false; }

setsid slurmctld -D -f "$state/slurm.conf" </dev/null >>"$state/log/slurmctld.out" 2>&1 &
echo $! >"$state/pids/slurmctld.pid"
setsid slurmd -D -f "$state/slurm.conf" </dev/null >>"$state/log/slurmd.out" 2>&1 &
echo $! >"$state/pids/slurmd.pid"

deadline=$((SECONDS + timeout_s))
node_state=""
while [ $SECONDS -lt $deadline ]; do
  for name in munged slurmctld slurmd; do
    pid=$(cat "$state/pids/$name.pid")
    kill -0 "$pid" 2>/dev/null || { echo "start.sh: $name (pid $pid) exited" >&2; false; }
  done
  node_state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
  [ "$node_state" = idle ] && break
  sleep 0.5
done
if [ "$node_state" != idle ]; then
  echo "start.sh: node $host is '${node_state:-unknown}' after ${timeout_s}s, not idle" >&2
  false
fi
trap - ERR
echo "export SLURM_CONF=$state/slurm.conf"
