#!/usr/bin/env bash
# The prepared device check:  bash bench/gpu_check.sh [--cpu] [--max_seconds S]
#
# For a machine with one NVIDIA GPU and no network, from a clean checkout, in at most 8 minutes: runs
# bench/gpu_check.py (its doc lists the sections) with this machine's own torch (a CUDA build where it
# has one; the log says which), dnnsep from this checkout's src/ (nothing is installed).  Packages
# dnnsep needs that the machine lacks (tqdm, pyyaml, soundfile) come from bench/.vendor when it
# exists: make it beforehand, where packages can be installed, with
#     python3 -m pip install --target bench/.vendor --no-deps tqdm pyyaml soundfile cffi pycparser
# and carry it.  Results: $OUT/gpu_check.json and $OUT/gpu_check.log ($OUT defaults to
# bench/gpu_check_out).  Exits non-zero if any check fails.  --cpu runs every section on the CPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
out=${OUT:-$root/bench/gpu_check_out}
mkdir -p "$out"
PYTHON=${PYTHON:-python3}
path="$root/src"
if [ -d "$root/bench/.vendor" ]; then  # it holds only what the machine may lack: never torch or numpy
  path="$path:$root/bench/.vendor"
fi
export PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}"
rc=0  # pipefail: the check's status, not tee's
"$PYTHON" "$root/bench/gpu_check.py" --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log" || rc=$?
exit "$rc"
