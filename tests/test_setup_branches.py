"""utils/setup.sh on the machines a newcomer brings: no venv active, and stub commands first on PATH
(python3, apt-get, apt-cache, id, uname, cc, brew; no nvidia-smi) that log their arguments, so each
branch runs here and nothing reaches the network or the system's apt.  Each stopping branch says one
line (``setup: ...``) and exits non-zero.  ``SETUP_TEST_BASH`` runs setup.sh with another bash (macOS's
/bin/bash is 3.2, where ``set -u`` calls an empty array unbound)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASH = os.environ.get("SETUP_TEST_BASH") or shutil.which("bash")
TOOLS = ("dirname", "tail", "rm", "mkdir", "ln", "mktemp")  # what setup.sh and the stubs use of the real system
VENV_PKG = "python{}.{}-venv".format(*sys.version_info[:2])  # the stub python's version is this interpreter's
NO_INDEX = "http://127.0.0.1:9/"  # refuses at once

# setup.sh's probes answered from STUB_* variables; everything else (its version, the ready check) goes
# to the real interpreter.  `-m venv` acts as Debian's: without ensurepip it leaves a half-made venv.
PYTHON_STUB = """\
#!/bin/sh
printf '%s %s\\n' "$0" "$*" >>"$STUB_LOG"
case "$*" in
  *EXTERNALLY-MANAGED*) echo "$STUB_MANAGED"; exit 0 ;;
  *base_prefix*) echo 0; exit 0 ;;
  *Python.h*) [ "$STUB_PYTHON_H" = 1 ]; exit ;;
  "-c import ensurepip") [ -e "$STUB_DIR/ensurepip" ]; exit ;;
  "-c import torch") [ "$STUB_TORCH" = 1 ]; exit ;;
  "-m venv "*)
    for venv; do :; done
    mkdir -p "$venv/bin" && ln -s "$0" "$venv/bin/python"
    if [ ! -e "$STUB_DIR/ensurepip" ] || [ -n "$STUB_VENV_FAILS" ]; then
      echo "Error: Command '[...ensurepip...]' returned non-zero exit status 1." >&2; exit 1
    fi
    exit 0 ;;
  "-m pip --version") exit 0 ;;
  "-m pip install "*--dry-run*)  # what the configured index would bring: STUB_DEFAULT_TORCH (cpu or cuda)
    for report; do case "$prev" in --report) break ;; esac; prev=$report; done
    extra=""; [ "$STUB_DEFAULT_TORCH" = cuda ] && extra=', {"metadata": {"name": "nvidia-cudnn-cu12"}}'
    printf '{"install": [{"metadata": {"name": "torch"}}%s]}' "$extra" >"$report"
    exit 0 ;;
  "-m pip install "*)
    printf 'pip-env CFLAGS=%s LDFLAGS=%s\\n' "$CFLAGS" "$LDFLAGS" >>"$STUB_LOG"
    case "$*" in *--index-url*torch*) if [ -n "$STUB_NO_TORCH_INDEX" ]; then
      echo "WARNING: Retrying after connection broken by 'Connection refused'" >&2
      echo "ERROR: No matching distribution found for torch" >&2; exit 1
    fi ;; esac
    exit 0 ;;
esac
exec "$STUB_REAL_PYTHON" "$@"
"""
STUBS = {
    "id": '[ "$1" = -u ] && echo "$STUB_UID"',
    "uname": 'echo "$STUB_OS"',
    "apt-get": 'case "$*" in *install*) : >"$STUB_DIR/ensurepip" ;; esac',  # as if python3.X-venv came
    "apt-cache": """[ "$2" = "$STUB_APT_KNOWS" ] && printf '%s:\\n  Candidate: 3.0-1\\n' "$2"; exit 0""",
    "brew": 'echo "$STUB_BREW_PREFIX"',
    "cc": '[ -n "$STUB_CC_FINDS" ]',  # whether `cc -E` finds the header (not Homebrew's on a Mac)
    "espeak-ng": "",
    "flite": "",
    "festival": "",
    "zsh": "",
    "shellcheck": "",
    "chromium": "",
}


def run_setup(tmp_path, what="main", *, stubs=("id", "uname", "apt-get", "apt-cache", "espeak-ng", "flite"),
              python=None, **env):  # fmt: skip
    """Run a copy of setup.sh (its checkout: tmp_path/checkout) -> (done, checkout, log lines)."""
    checkout, bin_dir, tools = tmp_path / "checkout", tmp_path / "stubs", tmp_path / "tools"
    for folder in (checkout / "utils", bin_dir, tools):
        folder.mkdir(parents=True)
    shutil.copy2(ROOT / "utils" / "setup.sh", checkout / "utils" / "setup.sh")
    for tool in TOOLS:
        (tools / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "log"
    log.touch()
    for name in stubs:  # each logs its arguments, then acts
        (bin_dir / name).write_text(f'#!/bin/sh\nprintf \'%s %s\\n\' {name} "$*" >>"$STUB_LOG"\n{STUBS[name]}\n')
    (bin_dir / "python3").write_text(PYTHON_STUB)
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    base = dict(STUB_LOG=log, STUB_DIR=tmp_path, STUB_REAL_PYTHON=sys.executable, STUB_MANAGED=0, STUB_UID=1000,
                STUB_OS="Linux", STUB_APT_KNOWS=VENV_PKG, STUB_PYTHON_H=1, STUB_TORCH=0, STUB_VENV_FAILS="",
                STUB_NO_TORCH_INDEX="", STUB_DEFAULT_TORCH="cuda", STUB_CC_FINDS="", STUB_BREW_PREFIX=tmp_path / "brew",
                TORCH_INDEX_URL=NO_INDEX,
                HTTP_PROXY=NO_INDEX, HTTPS_PROXY=NO_INDEX,  # whatever a real pip would try, it gets nowhere
                PATH=f"{bin_dir}{os.pathsep}{tools}", HOME=tmp_path, PYTHON=python or bin_dir / "python3")  # fmt: skip
    base.update(env)
    done = subprocess.run([BASH, str(checkout / "utils" / "setup.sh"), what], capture_output=True, text=True,
                          env={k: str(v) for k, v in base.items()}, timeout=60)  # fmt: skip
    return done, checkout.resolve(), log.read_text().splitlines()


def calls(log, name):
    return [line.split(" ", 1)[1] for line in log if line.split(" ", 1)[0] == name]


def pip_installs(log):
    return [line.split(" -m pip install ", 1)[1] for line in log if " -m pip install " in line]


@pytest.mark.parametrize("apt_knows", [VENV_PKG, "nothing"])
def test_without_ensurepip_a_user_is_told_the_venv_package(tmp_path, apt_knows):
    done, checkout, log = run_setup(tmp_path, STUB_MANAGED=1, STUB_APT_KNOWS=apt_knows)
    package = VENV_PKG if apt_knows == VENV_PKG else "python3-venv"  # the versioned one where apt has it
    assert done.returncode == 3, done.stderr
    assert done.stderr == (
        f"setup: missing python3-venv (needed to make .venv); install with: sudo apt-get install {package}\n"
    )
    assert not calls(log, "apt-get") and not (checkout / ".venv").exists() and not pip_installs(log)


@pytest.mark.parametrize("apt_knows", [VENV_PKG, "nothing"])
def test_as_root_apt_get_brings_the_venv_package_then_venv_is_made(tmp_path, apt_knows):
    done, checkout, log = run_setup(tmp_path, STUB_MANAGED=1, STUB_UID=0, STUB_TORCH=1, STUB_APT_KNOWS=apt_knows)
    package = VENV_PKG if apt_knows == VENV_PKG else "python3-venv"
    assert done.returncode == 0, done.stderr
    assert calls(log, "apt-get") == ["update -q", f"install -y -q --no-install-recommends {package}"]
    said = done.stderr.splitlines()
    assert said[:2] == [
        f"setup: installing {package} with apt-get (needed to make .venv)",
        f"setup: this Python is managed by the system (PEP 668): making {checkout}/.venv for dnnsep",
    ]
    assert done.stdout.splitlines()[-1] == f"{checkout}/.venv/bin/python"
    assert f"{checkout}/.venv/bin/python -m pip install -q --disable-pip-version-check -e {checkout}" in log


def test_a_failed_venv_is_removed_so_the_next_run_makes_it_again(tmp_path):
    (tmp_path / "ensurepip").touch()
    done, checkout, log = run_setup(tmp_path, STUB_MANAGED=1, STUB_VENV_FAILS=1)
    assert done.returncode == 3 and not (checkout / ".venv").exists()
    assert done.stderr.splitlines()[-1] == (
        f"setup: could not make {checkout}/.venv: {tmp_path}/stubs/python3 -m venv failed (above)"
    )


def test_no_cpu_index_stops_and_never_installs_a_cuda_build(tmp_path):
    done, checkout, log = run_setup(tmp_path, STUB_NO_TORCH_INDEX=1)
    assert done.returncode == 4, done.stderr
    assert done.stderr == (
        "setup: installing torch==2.13.0, the CPU build (no NVIDIA GPU here)\n"
        f"setup: cannot install torch==2.13.0 from {NO_INDEX} (pip: ERROR: No matching distribution found for"
        " torch), and the configured index would bring a CUDA build; set TORCH_INDEX_URL to a mirror of that"
        " index, or install torch yourself first\n"
    )
    # one try, pinned, from that index, then a dry run only: never plain torch from PyPI (the CUDA build)
    installs = pip_installs(log)
    assert (
        installs[0] == f"-q --disable-pip-version-check --timeout 20 --retries 1 --index-url {NO_INDEX} torch==2.13.0"
    )
    assert len(installs) == 2 and "--dry-run" in installs[1]


def test_no_cpu_index_takes_the_configured_index_where_it_serves_a_cpu_build(tmp_path):
    done, checkout, log = run_setup(tmp_path, STUB_NO_TORCH_INDEX=1, STUB_DEFAULT_TORCH="cpu")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[1] == (
        f"setup: {NO_INDEX} unreachable: torch==2.13.0 from the configured package index, which serves a CPU build"
    )
    assert pip_installs(log)[2] == "-q --disable-pip-version-check torch==2.13.0"


@pytest.mark.slow
def test_no_cpu_index_quotes_real_pips_last_error(tmp_path):
    venv = tmp_path / "venv"  # a real pip, without this machine's torch or its pip configuration
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    done, checkout, log = run_setup(tmp_path, python=venv / "bin" / "python", TORCH_VERSION="2.9.1",
                                    PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=NO_INDEX)  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"setup: cannot install torch==2.9.1 from {NO_INDEX} (pip: ERROR: No matching distribution found for"
        " torch==2.9.1), and the configured index would bring a CUDA build; set TORCH_INDEX_URL to a mirror of"
        " that index, or install torch yourself first"
    )


def test_missing_system_packages_name_the_apt_get_command(tmp_path):
    done, checkout, log = run_setup(tmp_path, "test", STUB_PYTHON_H=0)  # no festival, zsh, shellcheck, cc, headers
    assert done.returncode == 3, done.stderr
    assert done.stderr == (  # festival's voices are packages of their own
        "setup: missing: festival zsh shellcheck C compiler PortAudio headers Python headers Chromium; install with:"
        " sudo apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k"
        " festvox-itapc16k festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-dita festvox-czech-machac festvox-ru"
        " zsh shellcheck"
        " build-essential portaudio19-dev python3-dev chromium\n"
    )
    assert calls(log, "id") == ["-u"] and not calls(log, "apt-get") and not pip_installs(log)


def test_no_pip_is_named_with_how_to_get_it(tmp_path):
    venv = tmp_path / "venv"  # a real interpreter without pip
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    done, checkout, log = run_setup(tmp_path, python=python)
    hint = f"{python} -m ensurepip" if importlib.util.find_spec("ensurepip") else "sudo apt-get install python3-pip"
    assert done.returncode == 3, done.stderr
    assert done.stderr == f"setup: no pip in {python} (needed to install dnnsep); install with: {hint}\n"


@pytest.mark.parametrize("cc", ["finds headers", "none"])
def test_a_mac_missing_only_apples_tools_is_told_xcode_select_alone(tmp_path, cc):
    # no brew package missing: macOS's bash 3.2 stopped on the empty list ("unbound variable"), newer
    # bash said "brew install " with nothing after it
    (tmp_path / "brew" / "include").mkdir(parents=True)
    (tmp_path / "brew" / "include" / "portaudio.h").touch()  # found there when no cc finds it
    stubs = ("id", "uname", "brew", "espeak-ng", "flite", "festival", "zsh", "shellcheck", "chromium")
    stubs += ("cc",) if cc != "none" else ()
    done, checkout, log = run_setup(tmp_path, "test", stubs=stubs, STUB_OS="Darwin", STUB_PYTHON_H=0, STUB_CC_FINDS=1)
    missing = "Python headers" if cc != "none" else "C compiler Python headers"
    assert done.returncode == 3, done.stderr
    assert done.stderr == f"setup: missing: {missing}; install with: xcode-select --install\n"


def test_a_mac_finds_homebrews_portaudio_and_builds_pyaudio_against_it(tmp_path):
    brew = tmp_path / "brew"  # /opt/homebrew or /usr/local: not on the compiler's path
    (brew / "include").mkdir(parents=True)
    (brew / "include" / "portaudio.h").touch()
    stubs = ("id", "uname", "brew", "cc", "espeak-ng", "flite", "festival", "zsh", "shellcheck", "chromium")
    done, checkout, log = run_setup(tmp_path, "test", stubs=stubs, STUB_OS="Darwin", STUB_TORCH=1)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("setup: installing dnnsep[dev] into "), done.stderr
    assert pip_installs(log)[-1] == f"-q --disable-pip-version-check -e {checkout}[dev]"
    assert log[-1] == f"pip-env CFLAGS=-I{brew}/include LDFLAGS=-L{brew}/lib"
