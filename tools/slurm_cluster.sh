#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (as root), to try the suite launcher's SLURM path and
# for tests/test_slurm.py. Debian/Ubuntu packages; every file of the cluster under $PMTL_SLURM_DIR.
#
#   tools/slurm_cluster.sh install [--accounting]   # apt: slurmctld slurmd slurm-client munge (+ slurmdbd mariadb-server)
#   tools/slurm_cluster.sh start [--accounting]     # munged, slurmctld, slurmd (+ mariadbd, slurmdbd: sacct answers)
#   export SLURM_CONF=${PMTL_SLURM_DIR:-/tmp/pmtl-slurm}/slurm.conf   # clients (sinfo, srun, sbatch) read it
#   tools/slurm_cluster.sh stop                     # stops every daemon started here; the folder stays (logs)
#
# One node (this host, 127.0.0.1) with CPUs=2 and 90% of the memory, partition `debug` (the default),
# select/cons_tres over CPUs and memory, proctrack/linuxproc (no cgroups needed in a container).
set -euo pipefail
DIR=${PMTL_SLURM_DIR:-/tmp/pmtl-slurm}
HOST=$(hostname -s)
export SLURM_CONF=$DIR/slurm.conf
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)  # stop order: the reverse of start

die() { echo "slurm_cluster: $*" >&2; exit 1; }

install() {
    local packages=(slurmctld slurmd slurm-client munge)
    [[ ${1:-} == --accounting ]] && packages+=(slurmdbd mariadb-server mariadb-client)
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" > /dev/null
}

write_slurm_conf() {  # $1: accounting (yes|no)
    local mem_mb
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat > "$DIR/slurm.conf" <<EOF
ClusterName=pmtl
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
KillWait=0
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
JobCompType=jobcomp/none
EOF
    if [[ $1 == yes ]]; then
        printf 'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n' >> "$DIR/slurm.conf"
        printf 'AccountingStoragePass=%s\n' "$DIR/munge/munge.socket" >> "$DIR/slurm.conf"  # munge socket to slurmdbd
        printf 'JobAcctGatherType=jobacct_gather/linux\n' >> "$DIR/slurm.conf"
    else
        printf 'AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none\n' >> "$DIR/slurm.conf"
    fi
    cat >> "$DIR/slurm.conf" <<EOF
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=2 RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    mkdir -p -m 700 "$DIR/munge"
    mungekey --create --force --keyfile="$DIR/munge/munge.key" 2> /dev/null
    chmod 400 "$DIR/munge/munge.key"
    munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/run/munged.pid" --seed-file="$DIR/munge/munge.seed" --log-file="$DIR/log/munged.log"
}

start_accounting() {  # MariaDB on 127.0.0.1:3307 (a folder of its own), slurmdbd on it
    if [[ ! -d $DIR/mysql/mysql ]]; then
        mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket > "$DIR/log/mariadb-install.log" 2>&1
    fi
    mariadbd --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysql.sock" --bind-address=127.0.0.1 --port=3307 \
        --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadb.log" < /dev/null > /dev/null 2>&1 &
    for _ in $(seq 60); do mariadb --socket="$DIR/run/mysql.sock" -e "select 1" > /dev/null 2>&1 && break; sleep 0.5; done
    mariadb --socket="$DIR/run/mysql.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || die "MariaDB did not start: $DIR/log/mariadb.log"
    cat > "$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/slurmdbd.conf"
    slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
    for _ in $(seq 120); do (echo > /dev/tcp/127.0.0.1/6819) 2> /dev/null && return; sleep 0.5; done
    die "slurmdbd did not listen on port 6819: $DIR/log/slurmdbd.log"
}

wait_idle() {
    local end=$((SECONDS + 60))
    while ((SECONDS < end)); do
        [[ $(sinfo -h -N -o %t 2> /dev/null) == idle ]] && return
        sleep 0.5
    done
    die "the node is not idle: $(sinfo -N 2>&1); see $DIR/log/slurmctld.log and slurmd.log"
}

start() {
    local accounting=no
    [[ ${1:-} == --accounting ]] && accounting=yes
    [[ $(id -u) == 0 ]] || die "run as root (the daemons run as root here)"
    trap '[[ $? == 0 ]] || stop' EXIT  # a failed start leaves no daemon behind
    command -v slurmctld > /dev/null || die "SLURM is not installed: tools/slurm_cluster.sh install"
    [[ -e $DIR/run/slurmctld.pid ]] && die "a cluster is running from $DIR: tools/slurm_cluster.sh stop first"
    rm -rf "$DIR/state" "$DIR/spool"
    mkdir -p "$DIR"/{state,spool,run,log}
    write_slurm_conf "$accounting"
    start_munge
    [[ $accounting == yes ]] && start_accounting
    slurmctld -f "$DIR/slurm.conf"
    slurmd -f "$DIR/slurm.conf"
    wait_idle
    [[ $(srun -N1 -n1 --time=1 hostname) == "$HOST" ]] || die "srun hostname failed"
    [[ $accounting == no ]] || sacct -n > /dev/null || die "sacct does not answer: $DIR/log/slurmdbd.log"
    echo "SLURM cluster up (accounting: $accounting): export SLURM_CONF=$DIR/slurm.conf"
}

stop() {
    local pid
    if [[ -s $DIR/run/slurmctld.pid ]]; then  # end the jobs while slurmd can still clean up after them
        scancel --user="$(id -u)" 2> /dev/null || true
        for _ in $(seq 20); do [[ -z $(squeue -h 2> /dev/null) ]] && break; sleep 0.5; done
    fi
    for daemon in "${DAEMONS[@]}"; do
        if [[ -s $DIR/run/$daemon.pid ]]; then
            pid=$(cat "$DIR/run/$daemon.pid")
            kill "$pid" 2> /dev/null || true
            for _ in $(seq 40); do kill -0 "$pid" 2> /dev/null || break; sleep 0.25; done
            kill -9 "$pid" 2> /dev/null || true
            rm -f "$DIR/run/$daemon.pid"
        fi
    done
    for proc in /proc/[0-9]*; do  # step daemons left waiting for slurmd (they run in $DIR/log)
        if [[ $(cat "$proc/comm" 2> /dev/null) == slurmstepd && $(readlink "$proc/cwd") == "$DIR"/* ]]; then
            kill -9 "${proc#/proc/}" 2> /dev/null || true
        fi
    done
    return 0
}

case ${1:-} in
    install) install "${2:-}" ;;
    start) start "${2:-}" ;;
    stop) stop ;;
    *) die "usage: $0 install|start [--accounting] | stop" ;;
esac
