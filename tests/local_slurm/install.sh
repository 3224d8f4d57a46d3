#!/usr/bin/env bash
# Install the Debian packages for the single-node test SLURM (tests/test_slurm.py): the controller, the node
# daemon, the client commands (sbatch, squeue, scancel) and munge for authentication. No accounting
# database: start.sh runs SLURM without slurmdbd, so the profile asks squeue (not sacct) for job states.
# Run as root; idempotent (installs only what is missing). No daemon is started here: see start.sh.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install.sh: must run as root (apt-get)" >&2; exit 1; }
packages=(munge slurm-client slurmctld slurmd)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Without systemd the packages' postinst scripts do not start the daemons; start.sh does.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install.sh: present: $(dpkg-query -W -f='${Package} ${Version}  ' "${packages[@]}")"
