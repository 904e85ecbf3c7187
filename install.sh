#!/usr/bin/env bash
# Installs everything rnaret needs on a fresh Debian 12 machine with Python 3.11.
# Torch is pinned first: a bare `torch` requirement would pull a multi-GB CUDA build on a
# CPU machine. On a GPU cluster, install the CUDA build of torch 2.13.0 yourself first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}

apt_pkgs=(seqkit mmseqs2)
if [ "${RNARET_INSTALL_TEST_DEPS:-1}" = 1 ]; then
  # the SLURM test cluster and the browser tests of `rnaret serve`
  apt_pkgs+=(slurmctld slurmd slurm-client munge chromium)
fi
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install.sh: please install these Debian packages: ${missing[*]}" >&2
  fi
fi

"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
# the versions the conda environments pin (envs/*.yaml), so both ways of running agree
"$PY" -m pip install -q --disable-pip-version-check -c "$here/constraints.txt" -e "$here[all]"
