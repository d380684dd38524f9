#!/bin/bash
# A one-node SLURM on this machine for the test suite: `.ci/slurm.sh start` installs (as root, from Debian's
# packages) and starts munge, slurmctld and slurmd; `.ci/slurm.sh stop` stops them; `.ci/slurm.sh status`.
# The node is this machine (its CPUs and memory, no GPUs). The scheduler passes every 2 s, so a task released
# (`scontrol update JobId=... StartTime=now`; SLURM holds a requeued job 121 s otherwise) starts within seconds;
# finished jobs stay listed by squeue for MinJobAge seconds, so their end state can be read and a failed task
# requeued by hand. State and logs live under $LTH_SLURM_DIR (default /tmp/lth-slurm).
set -euo pipefail
ROOT="${LTH_SLURM_DIR:-/tmp/lth-slurm}"
CONF=/etc/slurm/slurm.conf
HOST="$(hostname -s)"

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "slurm.sh: SLURM is not installed and this is not root (apt-get install slurm-wlm munge)" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
}

write_config() {
    local cpus memory
    cpus="$(nproc)"
    memory="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"  # MiB, less what the OS keeps
    mkdir -p "$ROOT/state" "$ROOT/spool" "$ROOT/log" /etc/slurm
    cat >"$CONF" <<CONFIG
# written by .ci/slurm.sh: one node, this machine, for the test suite
ClusterName=lthci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/slurmctld.pid
SlurmdPidFile=$ROOT/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# finished jobs listed for 5 minutes (no accounting database here); a scheduling pass every 2 s
MinJobAge=300
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=5
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
Waittime=0
DefMemPerCPU=$((memory / cpus))
NodeName=$HOST CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONFIG
}

start() {
    install
    write_config
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if ! munge -n >/dev/null 2>&1; then  # no munged answering yet: start one, and note that it is ours to stop
        runuser -u munge -- /usr/sbin/munged
        touch "$ROOT/munged.ours"
    fi
    stop_daemons
    slurmctld -c -i
    slurmd -c
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
            echo "slurm.sh: one-node SLURM up on $HOST ($(nproc) CPUs, $(sinfo -h -o %m) MiB)"
            return 0
        fi
        sleep 1
    done
    echo "slurm.sh: the node did not become idle within 60 s; see $ROOT/log" >&2
    sinfo >&2 || true
    return 1
}

stop_daemons() {
    # only the daemons this script started: by their pid files
    for name in slurmd slurmctld; do
        local file="$ROOT/$name.pid" pid
        pid="$(cat "$file" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        fi
        rm -f "$file"
    done
}

stop() {
    if [ -f "$CONF" ] && command -v scancel >/dev/null; then scancel --full --quiet --user "$(id -un)" 2>/dev/null || true; fi
    stop_daemons
    if [ -f "$ROOT/munged.ours" ] && [ -s /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    fi
    rm -f "$ROOT/munged.ours"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo && squeue ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
