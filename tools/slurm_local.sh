#!/usr/bin/env bash
# A one-node Slurm on this machine, for LAUNCH=slurm's tests (make slurm-local; the end-to-end
# test starts it and stops it): Debian's slurm-wlm and munge (installed if missing, as root), a
# slurm.conf naming this host with its CPUs and memory (slurmd -C), no accounting database (the
# launcher reads squeue and submitit's result files, never sacct).
#   tools/slurm_local.sh start | stop | status
set -euo pipefail
conf=/etc/slurm/slurm.conf

start() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      echo "error: Slurm is not installed and installing it needs root: apt-get install slurm-wlm munge" >&2
      exit 2
    fi
    echo "[slurm-local] installing slurm-wlm and munge (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; } ||
      { echo "error: apt-get install slurm-wlm munge failed; run it by hand to see why" >&2; exit 2; }
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "error: starting slurmctld, slurmd and munged here needs root" >&2
    exit 2
  fi
  host=$(hostname -s)
  # this node as slurmd sees it; memory less 1 GiB for the system
  node=$(slurmd -C | head -1 | sed -E 's/ RealMemory=([0-9]+)//')
  mem=$(( $(slurmd -C | head -1 | sed -E 's/.*RealMemory=([0-9]+).*/\1/') - 1024 ))
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat > "$conf" <<EOF
# written by tools/slurm_local.sh: a one-node Slurm for LAUNCH=slurm's tests
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
SchedulerParameters=defer_batch
$node RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  # munged as its own user (as root it refuses its log and socket folders)
  mkdir -p /run/munge && chown munge:munge /run/munge
  if [ -e /var/log/munge/munged.log ] && [ "$(stat -c %U /var/log/munge/munged.log)" != munge ]; then
    rm -f /var/log/munge/munged.log
  fi
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    case "$state" in idle|mixed|allocated) echo "[slurm-local] up: node $host ($state), $conf"; return 0;; esac
    sleep 1
  done
  echo "error: the one-node Slurm did not come up in 60 s (node state: ${state:-none}); see /var/log/slurm/" >&2
  exit 1
}

stop() {
  scancel --user "$(id -un)" 2>/dev/null || true
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  echo "[slurm-local] stopped"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) sinfo 2>&1 ;;
  *) echo "usage: tools/slurm_local.sh start|stop|status" >&2; exit 2 ;;
esac
