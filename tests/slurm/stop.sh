#!/usr/bin/env bash
# Stop the daemons tests/slurm/start.sh started in DIR, by their PID files (never by name, so a
# SLURM or munge already running on the machine is left alone).
#
#   bash tests/slurm/stop.sh DIR
set -uo pipefail

DIR=$(realpath -m "${1:?usage: stop.sh DIR}")
for pidfile in "$DIR/run/slurmd.pid" "$DIR/run/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
done
echo "SLURM in $DIR stopped"
