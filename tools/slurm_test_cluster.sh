#!/usr/bin/env bash
# A single-node SLURM test cluster on this machine, for the real-cluster tests
# (tests/integration/test_slurm_cluster.py) and as a recipe to read.
#
#   sudo tools/slurm_test_cluster.sh          # install (Debian/Ubuntu) if missing, configure, start, wait idle
#   sudo tools/slurm_test_cluster.sh stop     # stop slurmd, slurmctld and munged again
#
# Run as root. Idempotent: when this host's node already answers idle (or busy with jobs), it says so and
# does nothing. What it does, in order:
#   1. apt-get install slurmctld slurmd slurm-client munge      (only when sbatch / slurmd / munged are missing)
#   2. writes /etc/slurm/slurm.conf: one node (this host, its CPUs and memory as `slurmd -C` reports them),
#      one partition `debug` (the default), select/cons_tres with cores and memory as consumable resources,
#      accounting off (no slurmdbd: sacct answers "accounting storage is disabled", the usual single-node
#      and many lab set-ups), process tracking through cgroups when this machine lets us create cgroups,
#      else by process tree (proctrack/linuxproc, task/none: works in a container without cgroups)
#   3. starts munged (authentication), slurmctld (the controller), slurmd (the node daemon)
#   4. waits (at most SLURM_TEST_WAIT_S seconds, default 60) until the node is idle.
# It proves the harness against one node and no GPUs: no multi-node placement, no gres scheduling.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
LOGDIR=/var/log/slurm
WAIT_S=${SLURM_TEST_WAIT_S:-60}
HOST=$(hostname -s)

say() { echo "slurm_test_cluster: $*"; }
die() { echo "slurm_test_cluster: $*" >&2; exit 1; }

node_state() {  # this host's node state as sinfo reports it (idle, mix, alloc, down*, drain, ...), or empty
    timeout 10 sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -n 1 || true
}

stop() {
    for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
        if [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then say "stopped $(basename "$pidfile" .pid)"; fi
    done
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi
[ "$#" -eq 0 ] || die "unknown argument '$1'; use no argument (start) or 'stop'"

if command -v sinfo >/dev/null; then
    case "$(node_state)" in
        idle|mix|alloc|comp) say "node $HOST is up ($(node_state)); nothing to do"; exit 0 ;;
    esac
fi
[ "$(id -u)" = 0 ] || die "run as root (it installs packages, writes $CONF and starts daemons)"

# 1. packages
if ! command -v sbatch >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "slurm is not installed and apt-get is missing; install slurmctld, slurmd, slurm-client and munge"
    say "installing slurmctld slurmd slurm-client munge (Debian packages)"
    { apt-get update -q >/dev/null || true; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
fi

# 2. configuration
# `slurmd -C` prints this node's line: NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ...
node_line=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$HOST/")
cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
[ -n "$cpus" ] && [ -n "$mem" ] || die "could not read CPUs and RealMemory from 'slurmd -C': $node_line"

cgroups_usable() {  # cgroup v1 controllers mounted and writable (a container often has neither)
    local c
    for c in freezer cpuset memory devices; do
        mkdir "/sys/fs/cgroup/$c/slurm_probe_$$" 2>/dev/null || return 1
        rmdir "/sys/fs/cgroup/$c/slurm_probe_$$"
    done
}
if [ "${SLURM_TEST_CGROUP:-auto}" != no ] && cgroups_usable; then
    tracking=$'ProctrackType=proctrack/cgroup\nTaskPlugin=task/cgroup,task/affinity'
    printf 'CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nConstrainCores=yes\nConstrainRAMSpace=yes\n' \
        > /etc/slurm/cgroup.conf
else
    tracking=$'ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none'
    rm -f /etc/slurm/cgroup.conf
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGDIR"
chown slurm:slurm /var/spool/slurmctld "$LOGDIR"
cat > "$CONF" <<EOF
# Written by tools/slurm_test_cluster.sh: a single-node test cluster.
ClusterName=fsadbench-test
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=slurm
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# cores and memory are what jobs ask for; a job without --mem gets its CPUs' share of the node
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
# no slurmdbd: job states come from squeue / scontrol (sacct says accounting is disabled)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
$tracking
# a preempted or requeued batch job goes back to the queue; a node that was down comes back by itself
JobRequeue=1
ReturnToService=2
# finished jobs stay visible to squeue / scontrol for 5 minutes
MinJobAge=300
KillWait=10
$node_line State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
say "wrote $CONF (node $HOST: $cpus CPUs, ${mem} MB; $(sed -n 's/^ProctrackType=//p' <<<"$tracking"))"

# 3. daemons (each one only when it is not running yet)
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
mkdir -p /run/munge && chown munge:munge /run/munge
if ! running /run/munge/munged.pid; then
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key && chown munge:munge /etc/munge/munge.key; }
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    say "started munged"
fi
if running /run/slurmctld.pid; then
    scontrol reconfigure
else
    slurmctld
    say "started slurmctld"
fi
if ! running /run/slurmd.pid; then
    slurmd || true
    sleep 2
    if ! running /run/slurmd.pid && [ "${SLURM_TEST_CGROUP:-auto}" != no ] && [ -f /etc/slurm/cgroup.conf ]; then
        say "slurmd did not start with cgroups; again with proctrack/linuxproc (see $LOGDIR/slurmd.log)"
        stop
        exec env SLURM_TEST_CGROUP=no "$0"
    fi
    running /run/slurmd.pid || die "slurmd did not start; see $LOGDIR/slurmd.log"
    say "started slurmd"
fi

# 4. wait until the node is idle
deadline=$((SECONDS + WAIT_S))
while :; do
    state=$(node_state)
    case "$state" in
        idle|mix|alloc) break ;;
        down*|drain*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 5 "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" >&2 || true
        die "node $HOST is not idle after ${WAIT_S} s (state '${state:-no answer}'); logs in $LOGDIR"
    fi
    sleep 1
done
say "node $HOST is $state: partition debug, $cpus CPUs, ${mem} MB, no GPUs"
