#!/usr/bin/env bash
# A throwaway one-node Slurm cluster on loopback for the Slurm executor's tests.
#
#   scripts/slurm-test-cluster.sh install       install slurm-wlm and munge (apt-get, as root) if missing
#   scripts/slurm-test-cluster.sh start DIR     start munged, slurmctld and slurmd with their state in DIR
#   scripts/slurm-test-cluster.sh stop DIR      stop the daemons started in DIR (by their pids)
#   scripts/slurm-test-cluster.sh watch DIR     (internal) stop them once no test holds DIR/users.lock
#
# Everything lives in DIR: its own munge key and socket, its own ports, pid files, spool and
# state, so it is independent of any other Slurm or munge on the machine. Commands reach it
# with SLURM_CONF=DIR/slurm.conf. Tests hold DIR/users.lock (shared) while they use the
# cluster; `start` leaves a watcher behind that stops the daemons when nobody holds it any
# more, so the daemons never outlive the tests, even when a test process is killed.
set -euo pipefail

# Ports away from Slurm's defaults (6817/6818) and from other experiments on the machine.
CTLD_PORT="${ENGINE_SLURM_CTLD_PORT:-17817}"
SLURMD_PORT="${ENGINE_SLURM_SLURMD_PORT:-17818}"

die() {
    echo "slurm-test-cluster: $*" >&2
    exit 1
}

have_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null &&
        command -v munged >/dev/null
}

install() {
    have_slurm && return 0
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are missing and installing them needs root"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    # The packages start system daemons on some machines; the tests use their own.
    have_slurm || die "slurm-wlm and munge did not install"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
    local dir="$1"
    for name in slurmd slurmctld munged; do
        local pidfile="$dir/$name.pid"
        if alive "$pidfile"; then
            local pid
            pid="$(cat "$pidfile")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

watch() {
    local dir="$1"
    # Drop descriptors inherited from whoever started the cluster: a lock held through one
    # of them would keep the watcher from ever seeing the tests end.
    local fd
    for fd in /proc/$$/fd/*; do
        fd="${fd##*/}"
        if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    # Once per second: if no test holds the users lock (and none is starting the cluster),
    # stop the daemons and leave.
    while sleep 1; do
        if flock -x "$dir/setup.lock" flock -xn "$dir/users.lock" true; then
            flock -x "$dir/setup.lock" "$0" stop "$dir"
            exit 0
        fi
    done
}

start() {
    local dir="$1"
    install
    [ "$(id -u)" = 0 ] || die "the test cluster runs its daemons as root"
    mkdir -p "$dir"/{state,spool,log,munge}
    chmod 700 "$dir/munge"
    if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid" && alive "$dir/munged.pid"; then
        return 0
    fi
    stop "$dir"

    local key="$dir/munge/munge.key" socket="$dir/munge/munge.socket"
    [ -f "$key" ] || mungekey --create --keyfile="$key" 2>/dev/null ||
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    chmod 600 "$key"
    munged --force --socket="$socket" --key-file="$key" --pid-file="$dir/munged.pid" \
        --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"

    local host
    host="$(hostname -s)"
    cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm-test-cluster.sh: a one-node cluster on loopback for tests.
ClusterName=enginetest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmUser=root
SlurmdUser=root
ReturnToService=2
MinJobAge=600
KillWait=2
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    # -i: ignore state left by an earlier cluster in this directory.
    slurmctld -i
    slurmd -N "$host"
    for _ in $(seq 300); do
        if sinfo --noheader --format=%t 2>/dev/null | grep -qx 'idle'; then
            # Leave a watcher that stops the daemons when the tests are done with them.
            setsid "$0" watch "$dir" </dev/null >/dev/null 2>&1 &
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    stop "$dir"
    die "the node did not come up within 30 s"
}

case "${1:-}" in
install) install ;;
start) start "${2:?usage: $0 start DIR}" ;;
stop) stop "${2:?usage: $0 stop DIR}" ;;
watch) watch "${2:?usage: $0 watch DIR}" ;;
*) die "usage: $0 install | start DIR | stop DIR | watch DIR" ;;
esac
