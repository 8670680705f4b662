# shellcheck shell=bash
# Sourced by the corpus scripts under egs/*/common/local/: puts this checkout's src/ on PYTHONPATH
# (so a fresh clone works before `pip install -e .`) and picks the Python interpreter.
DNNSEP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
export DNNSEP_ROOT
export PYTHONPATH="$DNNSEP_ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}
