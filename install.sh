#!/usr/bin/env bash
# Installs everything rnaret needs on a fresh Debian 12 machine with Python 3.11 (`python3`):
# the Debian packages below (when run as root), then the Python packages into a virtual
# environment, .venv/ in the repository, made with `python3 -m venv` (Debian's python3 refuses
# pip installs into the system's Python, PEP 668). Afterwards `. .venv/bin/activate` puts its
# `python`, `snakemake` and `rnaret` first on PATH (the pipeline's rules call `python -m rnaret`).
#
#   RNARET_VENV=DIR      make or reuse the virtual environment there instead of .venv/
#   PYTHON=INTERPRETER   install into that interpreter instead (a conda env, a venv of your own)
#   RNARET_INSTALL_TEST_DEPS=0   skip the Debian packages only the tests need (SLURM, Chromium)
#
# Torch is pinned first: a bare `torch` requirement would pull a multi-GB CUDA build on a
# CPU machine. On a GPU machine, install the CUDA build of torch 2.13.0 into the environment
# first (e.g. `python3 -m venv .venv`, then `.venv/bin/pip install` as PyTorch's site says).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base=python3

apt_pkgs=(seqkit mmseqs2)
if [ "${RNARET_INSTALL_TEST_DEPS:-1}" = 1 ]; then
  # the SLURM test cluster and the browser tests of `rnaret serve`
  apt_pkgs+=(slurmctld slurmd slurm-client munge chromium)
fi
if [ -z "${PYTHON:-}" ] && ! "$base" -c 'import ensurepip' >/dev/null 2>&1; then
  apt_pkgs+=(python3-venv)  # Debian ships venv's pip bootstrap (ensurepip) separately
fi
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install.sh: please install these Debian packages (as root): ${missing[*]}" >&2
  fi
fi

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
else
  venv=${RNARET_VENV:-$here/.venv}
  if [ ! -x "$venv/bin/python" ]; then
    "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { echo "install.sh: rnaret needs Python >= 3.11; $(command -v "$base") is $("$base" -V 2>&1)" >&2; exit 1; }
    "$base" -m venv "$venv"
  fi
  PY=$venv/bin/python
fi

"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
# the versions the conda environments pin (envs/*.yaml), so both ways of running agree
"$PY" -m pip install -q --disable-pip-version-check -c "$here/constraints.txt" -e "$here[all]"
if [ -z "${PYTHON:-}" ]; then
  echo "install.sh: installed into ${venv}; activate it with: . ${venv#"$PWD"/}/bin/activate" >&2
fi
