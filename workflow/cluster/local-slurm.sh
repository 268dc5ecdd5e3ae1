#!/usr/bin/env bash
# A single-node Slurm cluster on this (Debian/Ubuntu) machine, for CI and for trying the
# cluster path on a workstation:
#
#   sudo workflow/cluster/local-slurm.sh up       # install what is missing, start, wait for idle
#   sudo workflow/cluster/local-slurm.sh status   # daemons, sinfo, squeue (exit 3 when down)
#   sudo workflow/cluster/local-slurm.sh down     # cancel jobs, stop exactly our daemons
#
# One node (the short hostname) with the machine's real CPUs and most of its memory, two
# partitions on it, `main` (default) and `gpu` (one pretend GPU: gres gpu:1 on /dev/null, so a
# job asking for --gpus=1 is scheduled and sees CUDA_VISIBLE_DEVICES=0 without any GPU).
# Accounting runs through slurmdbd and a private MariaDB, so `sacct` works: the Snakemake
# executor plugin's default status query. An account `spiel` is created for root.
#
# Needs root and apt-get (installs slurmctld slurmd slurm-client munge slurmdbd mariadb-server
# when missing; nothing is started at install time). Daemons run in the background, each one
# recorded by PID under $LOCAL_SLURM_DIR/pids; `down` stops only those. State, spool, logs,
# sockets and the database live under $LOCAL_SLURM_DIR (default /tmp/local-slurm; wiped on `up`,
# logs kept after `down`). Slurm must find its configuration at /etc/slurm (the jobstep plugin
# clears SLURM_CONF inside jobs), so `up` writes /etc/slurm/{slurm,gres,slurmdbd}.conf, backing
# up any files already there, and `down` puts them back. Slurm's ports (6817-6819) and
# /etc/slurm are machine-wide: one such cluster per machine at a time.
#
# Environment:
#   LOCAL_SLURM_DIR          state directory (default /tmp/local-slurm)
#   LOCAL_SLURM_ACCOUNTING   1 (default): slurmdbd + MariaDB; 0: no accounting (then sacct
#                            fails: use `slurm-status-command: squeue` in the profile)
#   LOCAL_SLURM_DB_PORT      MariaDB's TCP port on 127.0.0.1 (default 16306, not 3306, so a
#                            workstation's own MySQL/MariaDB is left alone)
#   LOCAL_SLURM_MEM_MB       node RealMemory in MB (default: 85% of the machine's memory)
#   LOCAL_SLURM_TIMEOUT      seconds to wait for the node to be idle (default 90)
set -euo pipefail

DIR=${LOCAL_SLURM_DIR:-/tmp/local-slurm}
ACCOUNTING=${LOCAL_SLURM_ACCOUNTING:-1}
DB_PORT=${LOCAL_SLURM_DB_PORT:-16306}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-90}
ETC=/etc/slurm
CONF_FILES=(slurm.conf gres.conf slurmdbd.conf)
CLUSTER=localslurm
ACCOUNT=spiel
# Start order; `down` stops them in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { printf 'local-slurm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# --- processes we own -------------------------------------------------------------------------

pid_of() { [[ -f "$DIR/pids/$1.pid" ]] && cat "$DIR/pids/$1.pid" || true; }

# Alive, not a zombie, and still the program we started (a PID can be reused).
alive() {
    local name=$1 pid
    pid=$(pid_of "$name")
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
    local state
    state=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
    [[ "$state" != Z ]] || return 1
    local comm
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    # munged starts under setpriv, which then becomes munged.
    [[ "$comm" == "$name" || ( "$name" == munged && "$comm" == setpriv ) ]]
}

# start NAME COMMAND...: run in the background in its own session, stdio and our lock detached
# (so a caller that captures our output does not wait for the daemons, and the lock is ours
# alone), and record the PID.
start() {
    local name=$1; shift
    setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 9>&- &
    echo $! >"$DIR/pids/$name.pid"
    sleep 0.3
    alive "$name" || { tail_logs; die "$name exited at once (logs above)"; }
}

stop() {
    local name=$1 pid
    alive "$name" || { rm -f "$DIR/pids/$name.pid"; return 0; }
    pid=$(pid_of "$name")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        alive "$name" || break
        sleep 0.1
    done
    if alive "$name"; then
        log "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do alive "$name" || break; sleep 0.1; done
    fi
    rm -f "$DIR/pids/$name.pid"
}

tail_logs() {
    local f
    for f in "$DIR"/log/*; do
        [[ -s "$f" ]] || continue
        printf '\n==> %s (last 15 lines) <==\n' "$f" >&2
        tail -n 15 "$f" >&2
    done
}

wanted_daemons() {
    local d
    for d in "${DAEMONS[@]}"; do
        if [[ "$ACCOUNTING" != 1 && ( "$d" == mariadbd || "$d" == slurmdbd ) ]]; then continue; fi
        echo "$d"
    done
}

# --- installation ------------------------------------------------------------------------------

ensure_packages() {
    local missing=() cmd pkg
    for pair in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [[ "$ACCOUNTING" == 1 ]]; then
        command -v slurmdbd >/dev/null 2>&1 || missing+=(slurmdbd)
        command -v mariadbd >/dev/null 2>&1 || missing+=(mariadb-server)
        command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
    fi
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# --- configuration -----------------------------------------------------------------------------

backup_etc() {
    mkdir -p "$ETC" "$DIR/etc-backup"
    local f
    for f in "${CONF_FILES[@]}"; do
        # A file we wrote ourselves (an earlier `up` whose `down` never ran) is not backed up.
        if [[ -e "$ETC/$f" ]] && ! grep -q '^# written by local-slurm.sh' "$ETC/$f" 2>/dev/null; then
            cp -p "$ETC/$f" "$DIR/etc-backup/$f"
        fi
    done
}

restore_etc() {
    local f
    for f in "${CONF_FILES[@]}"; do
        if [[ -e "$DIR/etc-backup/$f" ]]; then
            cp -p "$DIR/etc-backup/$f" "$ETC/$f" && rm -f "$DIR/etc-backup/$f"
        elif grep -q '^# written by local-slurm.sh' "$ETC/$f" 2>/dev/null; then
            rm -f "$ETC/$f"
        fi
    done
}

write_config() {
    local node cpus_line mem_total mem socket=$DIR/munge/munge.socket
    node=$(hostname -s)
    getent hosts "$node" >/dev/null || die "the short hostname '$node' does not resolve: add it to /etc/hosts"
    # `slurmd -C` reports the node as slurmd sees it: CPUs, boards/sockets/cores/threads, memory.
    cpus_line=$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
    mem_total=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    mem=${LOCAL_SLURM_MEM_MB:-$(( mem_total * 85 / 100 ))}
    (( mem < mem_total )) || die "LOCAL_SLURM_MEM_MB=$mem is not below the machine's ${mem_total} MB"

    local accounting
    if [[ "$ACCOUNTING" == 1 ]]; then
        accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$node
AccountingStoragePort=6819
AccountingStoragePass=$socket
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
    else
        accounting="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
    fi

    cat >"$ETC/slurm.conf" <<EOF
# written by local-slurm.sh: a single-node test cluster, state under $DIR
ClusterName=$CLUSTER
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
$accounting
JobCompType=jobcomp/none
MailProg=/bin/true
GresTypes=gpu
# Without a default a job with no --mem would take the whole node.
DefMemPerCPU=500
# Finished jobs stay visible to squeue for 5 minutes (the plugin's squeue status needs
# MinJobAge >= 3x its status interval).
MinJobAge=300
ReturnToService=2
SlurmdTimeout=60
NodeName=$node ${cpus_line}RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node Default=NO MaxTime=INFINITE State=UP
EOF
    # A gres with a device file is required: a count-only gpu gres drains the node.
    cat >"$ETC/gres.conf" <<EOF
# written by local-slurm.sh: one pretend GPU
NodeName=$node Name=gpu File=/dev/null
EOF
    if [[ "$ACCOUNTING" == 1 ]]; then
        cat >"$ETC/slurmdbd.conf" <<EOF
# written by local-slurm.sh
AuthType=auth/munge
AuthInfo=socket=$socket
DbdHost=$node
DbdPort=6819
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
        chmod 600 "$ETC/slurmdbd.conf"
    fi
    chmod 644 "$ETC/slurm.conf" "$ETC/gres.conf"
}

# --- daemons -------------------------------------------------------------------------------------

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_munge() {
    id munge >/dev/null 2>&1 || die "no 'munge' user: is the munge package installed?"
    install -d -o munge -g munge -m 0700 "$DIR/munge"
    # Our own key, so /etc/munge is neither needed nor changed.
    head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
    chown munge:munge "$DIR/munge/munge.key"
    chmod 0600 "$DIR/munge/munge.key"
    chmod 0755 "$DIR/munge"  # clients (root, the munge user) reach the socket
    start munged setpriv --reuid=munge --regid=munge --init-groups \
        munged -F --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    for _ in $(seq 1 50); do
        [[ -S "$DIR/munge/munge.socket" ]] && return 0
        sleep 0.1
    done
    tail_logs; die "munged did not create its socket"
}

sql() { mariadb --no-defaults --socket="$DIR/mysql/mysqld.sock" -uroot "$@"; }

start_mariadb() {
    local datadir=$DIR/mysql/data
    install -d -o mysql -g mysql -m 0750 "$DIR/mysql" "$datadir"
    mariadb-install-db --no-defaults --datadir="$datadir" --user=mysql \
        --auth-root-authentication-method=socket --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 \
        || { tail_logs; die "mariadb-install-db failed"; }
    start mariadbd mariadbd --no-defaults --datadir="$datadir" --user=mysql \
        --socket="$DIR/mysql/mysqld.sock" --pid-file="$DIR/mysql/mysqld.pid" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=64M
    for _ in $(seq 1 300); do
        sql -e 'SELECT 1' >/dev/null 2>&1 && break
        alive mariadbd || { tail_logs; die "mariadbd exited"; }
        sleep 0.1
    done
    sql -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
        || { tail_logs; die "could not create the database user"; }
}

wait_for() {  # wait_for DESCRIPTION COMMAND...
    local what=$1; shift
    local deadline=$(( SECONDS + TIMEOUT ))
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS >= deadline )); then
            tail_logs
            log "timed out after ${TIMEOUT} s waiting for $what; stopping what was started"
            do_down >/dev/null 2>&1 || true
            die "the cluster did not come up (logs above, kept under $DIR/log)"
        fi
        local d
        for d in $(wanted_daemons); do
            alive "$d" || { tail_logs; do_down >/dev/null 2>&1 || true; die "$d exited (logs above)"; }
        done
        sleep 0.5
    done
}

node_idle() {
    local state
    state=$(sinfo -h -N -n "$(hostname -s)" -o '%T' 2>/dev/null | head -1)
    [[ "$state" == idle || "$state" == mixed || "$state" == allocated ]]
}

dbd_ready() { sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; }

do_up() {
    [[ $EUID -eq 0 ]] || die "run as root (installs packages, writes /etc/slurm, runs the daemons)"
    local d n_alive=0 n_wanted=0
    for d in $(wanted_daemons); do
        n_wanted=$((n_wanted + 1))
        alive "$d" && n_alive=$((n_alive + 1))
    done
    if (( n_alive == n_wanted )); then
        log "already up (state under $DIR); reusing it"
        node_idle || wait_for "the node to be idle" node_idle
        return 0
    fi
    (( n_alive == 0 )) || die "partly up ($n_alive of $n_wanted daemons alive): run '$0 down' first"
    for port in 6817 6818 6819 $( [[ "$ACCOUNTING" == 1 ]] && echo "$DB_PORT" ); do
        port_busy "$port" && die "port $port is in use: another Slurm (or database) runs on this machine"
    done

    ensure_packages
    # Fresh state every time; keep any backups of /etc/slurm files from a `down` that never ran.
    local keep
    keep=$(mktemp -d)
    [[ -d "$DIR/etc-backup" ]] && cp -a "$DIR/etc-backup/." "$keep/"
    rm -rf "$DIR"
    mkdir -p "$DIR"/{pids,log,run,state,spool,etc-backup}
    cp -a "$keep/." "$DIR/etc-backup/" && rm -rf "$keep"
    chmod 0755 "$DIR"

    backup_etc
    write_config
    start_munge
    if [[ "$ACCOUNTING" == 1 ]]; then
        start_mariadb
        start slurmdbd slurmdbd -D
        wait_for "slurmdbd" sacctmgr -n list cluster
        sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null
    fi
    start slurmctld slurmctld -D -i
    start slurmd slurmd -D
    wait_for "node $(hostname -s) to be idle in sinfo" node_idle
    if [[ "$ACCOUNTING" == 1 ]]; then
        wait_for "the cluster in slurmdbd" dbd_ready
        sacctmgr -i -Q add account "$ACCOUNT" cluster="$CLUSTER" Description=local-slurm Organization=local >/dev/null
        sacctmgr -i -Q add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
    fi
    log "up in ${SECONDS} s: $(sinfo -h -o '%P %a %D %T' | tr '\n' ';')"
}

do_down() {
    if alive slurmctld; then
        local jobs
        jobs=$(squeue -h -o '%i' 2>/dev/null || true)
        if [[ -n "$jobs" ]]; then
            log "cancelling jobs: $(echo $jobs)"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 1 30); do
                [[ -z "$(squeue -h -o '%i' 2>/dev/null)" ]] && break
                sleep 0.5
            done
        fi
    fi
    local i
    for (( i=${#DAEMONS[@]}-1; i>=0; i-- )); do
        stop "${DAEMONS[i]}"
    done
    [[ -d "$DIR" ]] && restore_etc
    log "down (logs kept under $DIR/log)"
}

do_status() {
    local d up=0 any=0
    for d in $(wanted_daemons); do
        if alive "$d"; then
            echo "$d: running (pid $(pid_of "$d"))"; any=1
        else
            echo "$d: not running"; up=3
        fi
    done
    if (( any )); then
        sinfo 2>&1 || true
        squeue 2>&1 || true
    fi
    return $up
}

case "${1:-}" in
    up|down)
        # One `up` or `down` at a time on this state directory.
        mkdir -p "$(dirname "$DIR")"
        exec 9>"$DIR.lock"
        flock -w 300 9 || die "another local-slurm.sh up/down holds $DIR.lock"
        "do_$1" ;;
    status) do_status ;;
    *) usage ;;
esac
