#!/usr/bin/env bash
# Set up what dnnsep needs on this machine, once:  bash utils/setup.sh [main|test]
#
#   main   the main job's needs: dnnsep and its runtime packages; espeak-ng (the offline corpus's voices)
#   test   everything the test suite runs: also flite, and festival and ten of its voices (the engine the
#          benches hold out), zsh, shellcheck, PortAudio + a C compiler and Python headers (PyAudio builds from
#          source), and the [dev] extra (pytest, onnxruntime, matplotlib, ...)
#
# System packages: as root with apt-get (Debian/Ubuntu) they are installed, saying so; otherwise one
# line names each missing package and the command that installs it on this system, and the script
# stops before anything runs.  Python packages go into the active virtual environment; where the
# system Python is externally managed (PEP 668) and none is active, into .venv (made here, sharing the
# system's packages so an installed torch is reused).  An installed torch (Colab, a Mac) is kept; on a
# Linux machine without an NVIDIA GPU the CPU build is installed (torch==$TORCH_VERSION from
# $TORCH_INDEX_URL, PyTorch's CPU index unless set; failing that, from pip's configured index if
# that serves a CPU build), never a multi-GB CUDA build.  A repeated run
# installs nothing.  Prints the Python to use as its last line (stdout).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
what=${1:-main}
case "$what" in main | test) ;; *) echo "usage: bash utils/setup.sh [main|test]" >&2; exit 2 ;; esac
say() { printf 'setup: %s\n' "$*" >&2; }
PYTHON=${PYTHON:-python3}
os=$(uname -s)
# bash 3.2 (macOS) with set -u calls an empty array unbound: every array expanded below is either
# never empty or guarded by its length.

# -- system packages ----------------------------------------------------------------------------
# name:command-or-file-that-shows-it-is-there:apt packages:brew package
needs=("espeak-ng:espeak-ng:espeak-ng:espeak-ng")
if [ "$what" = test ]; then
  needs+=("flite:flite:flite:flite")
  festival_voices="festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k festvox-itapc16k"
  festival_voices="$festival_voices festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-dita festvox-czech-machac festvox-ru"
  needs+=("festival:festival:festival $festival_voices:"  # the engine the benches hold out of training
    "zsh:zsh:zsh:zsh" "shellcheck:shellcheck:shellcheck:shellcheck" "C compiler:cc:build-essential:"
    "PortAudio headers:portaudio.h:portaudio19-dev:portaudio" "Python headers:Python.h:python3-dev:"
    "Chromium:chromium:chromium:")  # the report page's browser test (macOS: brew install --cask chromium)
fi
brew_include() {  # the Homebrew prefix whose include/ holds header $1: not on Apple's compiler's path
  local prefix
  [ "$os" = Darwin ] || return 1
  for prefix in "$(brew --prefix 2>/dev/null || true)" /opt/homebrew /usr/local; do  # Apple Silicon, Intel
    if [ -n "$prefix" ] && [ -f "$prefix/include/$1" ]; then echo "$prefix"; return 0; fi
  done
  return 1
}
have() {  # a command on PATH, or a header the compiler (or Homebrew) has
  case "$1" in
    *.h) [ "$1" = Python.h ] && { "$PYTHON" -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")))' 2>/dev/null; return; }
         printf '#include <%s>\n' "$1" | cc -E - >/dev/null 2>&1 || brew_include "$1" >/dev/null ;;
    chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
         || [ -x /Applications/Chromium.app/Contents/MacOS/Chromium ] ;;
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
    missing_names+=("$name")
    for package in $apt; do missing_apt+=("$package"); done  # one or more, split on spaces
    if [ -n "$brew" ]; then missing_brew+=("$brew"); fi
  fi
done
if [ ${#missing_names[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages with apt-get: ${missing_apt[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_apt[@]}" >/dev/null
  elif [ "$os" = Darwin ]; then
    hint=  # Apple's command line tools bring the compiler and Python's headers; Homebrew the rest
    case " ${missing_names[*]} " in *" C compiler "* | *" Python headers "*) hint="xcode-select --install" ;; esac
    if [ ${#missing_brew[@]} -gt 0 ]; then hint="${hint:+$hint; }brew install ${missing_brew[*]}"; fi
    case " ${missing_names[*]} " in *" Chromium "*) hint="${hint:+$hint; }brew install --cask chromium" ;; esac
    case " ${missing_names[*]} " in *" festival "*) hint="${hint:+$hint; }port install festival (MacPorts)" ;; esac
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
    if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then  # Debian/Ubuntu ship it apart, in python3.X-venv
      venv_pkg=$("$PYTHON" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')
      # python3-venv brings only the default python3's; the versioned package fits this interpreter
      policy=$(apt-cache policy "$venv_pkg" 2>/dev/null || true)
      case "$policy" in *"Candidate: "[0-9]*) ;; *) venv_pkg=python3-venv ;; esac
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing $venv_pkg with apt-get (needed to make .venv)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$venv_pkg" >/dev/null
      else
        say "missing python3-venv (needed to make .venv); install with: sudo apt-get install $venv_pkg"
        exit 3
      fi
    fi
    say "this Python is managed by the system (PEP 668): making $root/.venv for dnnsep"
    # a failed venv leaves a .venv without pip that a later run would take as made
    if ! "$PYTHON" -m venv --system-site-packages "$root/.venv"; then
      rm -rf "$root/.venv"
      say "could not make $root/.venv: $PYTHON -m venv failed (above)"
      exit 3
    fi
  fi
  PYTHON=$root/.venv/bin/python
fi

target=$root modules="dnnsep torch numpy soundfile yaml tqdm"
if [ "$what" = test ]; then
  target="${root}[dev]" modules="$modules pyaudio pytest ruff matplotlib onnxruntime onnx fast_bss_eval pesq pystoi huggingface_hub pyroomacoustics"
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
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  hint="sudo apt-get install python3-pip"
  if "$PYTHON" -c 'import ensurepip' 2>/dev/null; then hint="$PYTHON -m ensurepip"; fi
  say "no pip in $PYTHON (needed to install dnnsep); install with: $hint"
  exit 3
fi
pip=("$PYTHON" -m pip install -q --disable-pip-version-check)
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  if [ "$os" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    torch="torch==${TORCH_VERSION:-2.13.0}" index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
    say "installing $torch, the CPU build (no NVIDIA GPU here)"
    # The CPU index; failing that, the configured index only where pip's dry run of it brings no CUDA
    # library (a mirror that serves CPU builds, Linux on ARM): PyPI serves Linux x86-64 the CUDA build
    if ! out=$("${pip[@]}" --timeout 20 --retries 1 --index-url "$index" "$torch" 2>&1); then
      report=$(mktemp)
      if "${pip[@]}" --dry-run --ignore-installed --report "$report" "$torch" >/dev/null 2>&1 \
        && "$PYTHON" - "$report" <<'PY'
import json, sys
names = [i["metadata"]["name"].lower() for i in json.load(open(sys.argv[1]))["install"]]
sys.exit(not any(n == "torch" for n in names) or any(n.startswith(("nvidia-", "triton")) for n in names))
PY
      then
        rm -f "$report"
        say "$index unreachable: $torch from the configured package index, which serves a CPU build"
        "${pip[@]}" "$torch"
      else
        rm -f "$report"
        say "cannot install $torch from $index (pip: $(printf '%s\n' "$out" | tail -n 1)), and the configured index would bring a CUDA build; set TORCH_INDEX_URL to a mirror of that index, or install torch yourself first"
        exit 4
      fi
    elif [ -n "$out" ]; then
      printf '%s\n' "$out" >&2
    fi
  else
    say "installing torch"
    "${pip[@]}" torch
  fi
fi
if [ "$what" = test ] && portaudio=$(brew_include portaudio.h); then  # PyAudio builds against Homebrew's
  export CFLAGS="-I$portaudio/include${CFLAGS:+ $CFLAGS}" LDFLAGS="-L$portaudio/lib${LDFLAGS:+ $LDFLAGS}"
fi
say "installing dnnsep${target#"$root"} into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
"${pip[@]}" -e "$target"
echo "$PYTHON"
