#!/usr/bin/env bash
# Start a private single-node SLURM (munged, slurmctld, slurmd) whose state lives in DIR.
#
#   bash tests/slurm/start.sh DIR [FAKE_GPUS]
#   export PATH=DIR/bin:$PATH   # then sbatch/squeue/srun/scancel talk to it
#   bash tests/slurm/stop.sh DIR
#
# Needs root and the Debian packages slurmctld slurmd slurm-client munge. Works without systemd,
# cgroups or an accounting database (hence the plugin choices below). Ports are picked free and
# munged gets its own socket, so it never disturbs a SLURM or munge already on the machine.
# FAKE_GPUS (default 2) character devices aliasing /dev/null are declared as GPUs: a job asking
# --gpus=1 then gets CUDA_VISIBLE_DEVICES set by SLURM, which is what the pipeline must respect.
set -euo pipefail

DIR=$(realpath -m "${1:?usage: start.sh DIR [FAKE_GPUS]}")
GPUS=${2:-2}
for exe in munged slurmctld slurmd sinfo; do
    command -v "$exe" >/dev/null || { echo "start.sh: $exe not installed" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "start.sh: must run as root" >&2; exit 3; }

mkdir -p "$DIR"/{etc,spool/ctld,spool/d,log,run,dev,munge}
# munged runs as user munge and refuses a socket folder that others may write to or cannot
# enter: every level must be traversable by all and writable only by its owner.
chmod 755 "$DIR" "$DIR"/*
chown munge:munge "$DIR/munge"
KEY=/etc/munge/munge.key
[ -s "$KEY" ] || { echo "start.sh: $KEY missing (reinstall munge)" >&2; exit 3; }

SOCKET="$DIR/munge/munge.socket"
runuser -u munge -- munged --socket="$SOCKET" --key-file="$KEY" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
    --seed-file="$DIR/munge/munged.seed"
munge -n --socket="$SOCKET" | unmunge --socket="$SOCKET" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port)
D_PORT=$(free_port)
HOST=$(hostname -s)

GRES_LINE=""
if [ "$GPUS" -gt 0 ]; then
    : > "$DIR/etc/gres.conf"
    for i in $(seq 0 $((GPUS - 1))); do
        [ -e "$DIR/dev/gpu$i" ] || mknod "$DIR/dev/gpu$i" c 1 3
        echo "NodeName=$HOST Name=gpu File=$DIR/dev/gpu$i" >> "$DIR/etc/gres.conf"
    done
    GRES_LINE="Gres=gpu:$GPUS"
fi
# The node as slurmd sees it (real CPUs and memory), reachable on the loopback address.
NODE=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$HOST/")

cat > "$DIR/etc/slurm.conf" <<EOF
ClusterName=bnaftest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue: without accounting it is the only status source.
MinJobAge=300
# A job past its time limit is killed 1 s after SIGTERM (resume tests kill jobs on purpose).
KillWait=1
OverTimeLimit=0
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
GresTypes=gpu
$NODE NodeAddr=127.0.0.1 $GRES_LINE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# Client shims that name this cluster's config. SLURM_CONF alone is not enough: Snakemake's
# job-step executor strips every SLURM_* variable before its nested srun, but keeps PATH.
mkdir -p "$DIR/bin"
for tool in srun sbatch squeue scancel sinfo scontrol; do
    printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$DIR/etc/slurm.conf" "$(command -v $tool)" \
        > "$DIR/bin/$tool"
    chmod 755 "$DIR/bin/$tool"
done

export SLURM_CONF="$DIR/etc/slurm.conf"
slurmctld -c -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"

for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
    case "$state" in
        idle*) echo "SLURM up: node $HOST idle ($DIR)"; exit 0 ;;
        drain* | down*) scontrol update nodename="$HOST" state=resume || true ;;
    esac
    sleep 0.5
done
echo "start.sh: node not idle after 30 s (state: ${state:-none}); logs in $DIR/log" >&2
tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
exit 1
