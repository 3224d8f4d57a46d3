#!/usr/bin/env bash
# Debian packages the test suite and the phantom use beyond Python: dicom3tools (dciodvfy) and dcmtk (dcmdump;
# dcmcjpls and dcmcjpeg write the phantom's JPEG-LS and JPEG Lossless SV1 files), and a single-node SLURM (slurm-wlm, munge) for the cluster tests. Run as root; idempotent.
set -euo pipefail
packages=(dicom3tools dcmtk)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$here/tests/local_slurm/install.sh" ]; then
    bash "$here/tests/local_slurm/install.sh"
fi
