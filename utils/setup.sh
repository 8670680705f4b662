#!/usr/bin/env bash
# Set up what dnnsep needs on this machine, once:  bash utils/setup.sh [main|test]
#
#   main   the main job's needs: dnnsep and its runtime packages; espeak-ng (the offline corpus's voices)
#   test   everything the test suite runs: also zsh, PortAudio + a C compiler and Python headers (PyAudio
#          builds from source), shellcheck, and the [dev] extra (pytest, onnxruntime, matplotlib, ...)
#
# System packages: as root with apt-get (Debian/Ubuntu) they are installed, saying so; otherwise one
# line names each missing package and the command that installs it on this system, and the script
# stops before anything runs.  Python packages go into the active virtual environment; where the
# system Python is externally managed (PEP 668) and none is active, into .venv (made here, sharing the
# system's packages so an installed torch is reused).  An installed torch (Colab, a Mac) is kept; on a
# Linux machine without an NVIDIA GPU the CPU build is installed, never a multi-GB CUDA build.  A
# repeated run installs nothing.  Prints the Python to use as its last line (stdout).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
what=${1:-main}
case "$what" in main | test) ;; *) echo "usage: bash utils/setup.sh [main|test]" >&2; exit 2 ;; esac
say() { printf 'setup: %s\n' "$*" >&2; }
PYTHON=${PYTHON:-python3}

# -- system packages ----------------------------------------------------------------------------
# name:command-or-file-that-shows-it-is-there:apt package:brew package
needs=("espeak-ng:espeak-ng:espeak-ng:espeak-ng")
if [ "$what" = test ]; then
  needs+=("zsh:zsh:zsh:zsh" "shellcheck:shellcheck:shellcheck:shellcheck" "C compiler:cc:build-essential:"
    "PortAudio headers:portaudio.h:portaudio19-dev:portaudio" "Python headers:Python.h:python3-dev:")
fi
have() {  # a command on PATH, or a header the compiler finds
  case "$1" in
    *.h) [ "$1" = Python.h ] && { "$PYTHON" -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")))' 2>/dev/null; return; }
         printf '#include <%s>\n' "$1" | cc -E - >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}
missing() {  # the tests need everything; the main job runs without espeak-ng (a numpy corpus, which sounds worse)
  if [ "$what" = main ]; then
    say "note: no ${missing_names[*]}: the offline corpus falls back to a numpy synthesiser (install with: $1)"
  else
    say "missing: ${missing_names[*]}; install with: $1"
    exit 3
  fi
}
missing_apt=() missing_brew=() missing_names=()
for need in "${needs[@]}"; do
  IFS=: read -r name probe apt brew <<NEED
$need
NEED
  if ! have "$probe"; then
    missing_names+=("$name"); missing_apt+=("$apt")
    if [ -n "$brew" ]; then missing_brew+=("$brew"); fi
  fi
done
if [ ${#missing_names[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages with apt-get: ${missing_apt[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_apt[@]}" >/dev/null
  elif [ "$(uname -s)" = Darwin ]; then
    hint="brew install ${missing_brew[*]}"
    case " ${missing_names[*]} " in *" C compiler "* | *" Python headers "*) hint="xcode-select --install; $hint" ;; esac
    missing "$hint"
  else
    missing "sudo apt-get install ${missing_apt[*]}"
  fi
fi

# -- the Python environment ---------------------------------------------------------------------
in_venv=$("$PYTHON" -c 'import sys; print(int(sys.prefix != sys.base_prefix))')
managed=$("$PYTHON" -c 'import sysconfig,os; print(int(os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"],"EXTERNALLY-MANAGED"))))')
if [ "$in_venv" = 0 ] && [ "$managed" = 1 ] && [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x "$root/.venv/bin/python" ]; then
    say "this Python is managed by the system (PEP 668): making $root/.venv for dnnsep"
    "$PYTHON" -m venv --system-site-packages "$root/.venv"
  fi
  PYTHON=$root/.venv/bin/python
fi

target=$root modules="dnnsep torch numpy soundfile yaml tqdm"
if [ "$what" = test ]; then
  target="${root}[dev]" modules="$modules pyaudio pytest ruff matplotlib onnxruntime onnx fast_bss_eval pesq pystoi"
fi
ready() {  # every module importable, and dnnsep is this checkout's
  # shellcheck disable=SC2086  # $modules: one word per module
  "$PYTHON" - "$root" $modules <<'PY' 2>/dev/null
import importlib.util, os, sys
root, names = sys.argv[1], sys.argv[2:]
if any(importlib.util.find_spec(n) is None for n in names):
    sys.exit(1)
spec = importlib.util.find_spec("dnnsep")
sys.exit(not os.path.realpath(spec.origin).startswith(os.path.realpath(os.path.join(root, "src")) + os.sep))
PY
}
if ready; then
  echo "$PYTHON"
  exit 0
fi
pip=("$PYTHON" -m pip install -q --disable-pip-version-check)
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  if [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    say "installing torch, the CPU build (no NVIDIA GPU here)"
    # PyTorch's CPU index first; a package index that serves CPU builds as plain torch as the fallback
    "${pip[@]}" --timeout 20 --retries 1 torch --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
      || "${pip[@]}" "torch==${TORCH_VERSION:-2.13.0}"
  else
    say "installing torch"
    "${pip[@]}" torch
  fi
fi
say "installing dnnsep${target#"$root"} into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
"${pip[@]}" -e "$target"
echo "$PYTHON"
