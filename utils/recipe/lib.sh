# shellcheck shell=bash
# Sourced by the template's scripts (utils/recipe/*.sh), which a recipe's fronts (egs/<corpus>/<model>/*.sh)
# run as children.  Sets: recipe (the recipe directory, from DNNSEP_RECIPE), DNNSEP_ROOT, PYTHONPATH
# (this checkout's src/, so a fresh clone works before `pip install -e .`), PYTHON, and DNNSEP_PROG
# (the front's name, which help texts and errors show).  Also: resolve_config, say, run_py.
DNNSEP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
export DNNSEP_ROOT
export PYTHONPATH="$DNNSEP_ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}
recipe=${DNNSEP_RECIPE:?run this through a recipe front such as egs/librispeech/dprnn_tasnet/train.sh}
recipe=$(cd "$recipe" && pwd -P)
export DNNSEP_PROG=${DNNSEP_PROG:-$(basename "$0")}
prog=$DNNSEP_PROG

say() { printf '%s\n' "$*" >&2; }

# --config FILE: as given (relative to your directory), else relative to the recipe (conf/mini.yaml).
resolve_config() {
  if [ ! -f "$1" ] && [ -f "$recipe/$1" ]; then printf '%s\n' "$recipe/$1"; else printf '%s\n' "$1"; fi
}

# run_py ARGS...: "$PYTHON" ARGS..., the command shown first with DNNSEP_VERBOSE=1.
run_py() {
  if [ "${DNNSEP_VERBOSE:-0}" = 1 ]; then say "+ $PYTHON $*"; fi
  "$PYTHON" "$@"
}

# The Python package must import (numpy, torch, ...): one line naming the fix, not a traceback.
check_python() {
  local probe='import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))'
  if ! "$PYTHON" -c "$probe" dnnsep torch numpy soundfile yaml tqdm 2>/dev/null; then
    say "$prog: dnnsep's Python packages are missing for $PYTHON; install them with: $PYTHON -m pip install -e \"$DNNSEP_ROOT\""
    return 2
  fi
}
