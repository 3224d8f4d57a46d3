#!/usr/bin/env bash
# Stop the daemons tests/local_slurm/start.sh started (listed in /run/osteoloc_local_slurm/started), by
# the pids in their pid files, checking each process's name so a stale pid file never ends an unrelated
# process. Jobs still queued or running are cancelled first. Daemons that were already running before
# start.sh are left alone; `--all` stops slurmd, slurmctld and munged whoever started them.
# `--purge-state` also deletes the controller's saved state (job ids restart at 1). Run as root.
set -uo pipefail
[ "$(id -u)" = 0 ] || { echo "stop.sh: must run as root" >&2; exit 1; }
STATE_DIR=/run/osteoloc_local_slurm
ALL=0
PURGE=0
for arg in "$@"; do
    case "$arg" in
        --all) ALL=1 ;;
        --purge-state) PURGE=1 ;;
        *) echo "stop.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done
log() { echo "[local_slurm stop] $*"; }
started() { [ "$ALL" = 1 ] || grep -qx "$1" "$STATE_DIR/started" 2>/dev/null; }

stop_pidfile() { # stop_pidfile PIDFILE COMM
    local f=$1 comm=$2 pid
    started "$comm" || { log "$comm: not started by start.sh, left running"; return 0; }
    sed -i "/^$comm\$/d" "$STATE_DIR/started" 2>/dev/null
    [ -s "$f" ] || { log "$comm: no pid file"; return 0; }
    pid=$(cat "$f" 2>/dev/null)
    if [ -z "$pid" ] || [ ! -d "/proc/$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$comm" ]; then
        log "$comm: not running"
        rm -f "$f"
        return 0
    fi
    log "stopping $comm (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then
        log "$comm did not exit, sending KILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$f"
}

# 1. cancel the jobs while the controller is up; wait (bounded) for them to end
if started slurmctld && command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q UP; then
    ids=$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${ids// /}" ]; then
        log "cancelling jobs: $ids"
        # shellcheck disable=SC2086
        scancel $ids 2>/dev/null
        for _ in $(seq 1 50); do
            [ -z "$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

# 2. daemons, in reverse start order
stop_pidfile /run/slurmd.pid slurmd
stop_pidfile /run/slurmctld.pid slurmctld
# munged has no pid file option here: it writes /run/munge/munged.pid
stop_pidfile /run/munge/munged.pid munged

if [ "$PURGE" = 1 ]; then
    log "purging the controller's state"
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
fi
log "done"
