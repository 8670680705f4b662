"""The README's two commands, as a newcomer types them: in a scratch copy of this checkout and a fresh
virtual environment without dnnsep (sharing this machine's packages, so torch is not downloaded), the
commands are taken from the README itself and both must succeed without pulling a CUDA build (judged by
what the venv holds afterwards, not by words in the output: setup says "no NVIDIA GPU here")."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Extra arguments that keep the commands short here: a tiny corpus and model for the main job, one
# test file for the suite.  (The commands themselves come from the README.)
TINY_YAML = """\
extends: {mini}
prepare:
  segment: 1.0
  eval_segment: 1.0
  n_train: 8
  n_valid: 4
  n_test: 4
  no_progress: true
corpus:
  synthetic_speakers: 3
  synthetic_utts: 2
model:
  n_filters: 8
  hidden: 8
  n_blocks: 1
epochs: 1
num_workers: 0
device: cpu
"""


# What setup put into the venv itself (not this machine's shared packages): torch's CUDA version, if
# torch is the venv's own, and any nvidia-* wheels (the CUDA build's runtime).
INSTALLED = """\
import importlib.metadata, json, os, sys
venv = os.path.realpath(sys.prefix) + os.sep
own = [d.metadata["Name"].lower() for d in importlib.metadata.distributions()
       if os.path.realpath(d.locate_file("")).startswith(venv)]
import torch
print(json.dumps({"torch_cuda": torch.version.cuda if "torch" in own else None,
                  "nvidia": [n for n in own if n.startswith("nvidia-")]}))
"""


def readme_commands() -> list[str]:
    """The shell lines of the README's front-door block (between its <!-- front door --> markers)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- front door -->\s*```sh\n(.*?)```\s*<!-- /front door -->", text, re.S)
    assert block, "README.md has no front-door block"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def copy_checkout(dest: Path) -> None:
    """The files a clone would have (tracked, and new ones git does not ignore)."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def test_the_readmes_two_commands_work_in_a_fresh_environment(tmp_path):
    commands = readme_commands()
    assert len(commands) == 2, commands
    clone = tmp_path / "dnnsep"
    copy_checkout(clone)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DNNSEP_PROG", "PYTHON")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv))
    (clone / "tiny.yaml").write_text(TINY_YAML.format(mini=clone / "egs/librispeech/dprnn_tasnet/conf/mini.yaml"))
    extra = [f'--config "{clone}/tiny.yaml"', "tests/test_losses.py -q -p no:cacheprovider"]
    outputs = []
    for command, more in zip(commands, extra):
        done = subprocess.run(["bash", "-c", f"{command} {more}"], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=900)  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{command}:\n{output[-4000:]}"
        outputs.append(output)
    main, tests = outputs
    assert "installing dnnsep" in main and "SI-SDRi" in main  # set up, then data -> train -> test
    assert "passed" in tests
    installed = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", INSTALLED], capture_output=True,
                                          text=True, env=env, check=True).stdout)  # fmt: skip
    if shutil.which("nvidia-smi") is None:  # where there is an NVIDIA GPU, setup installs a CUDA build
        assert installed == {"torch_cuda": None, "nvidia": []}, installed
    origin = subprocess.run([str(venv / "bin" / "python"), "-c", "import dnnsep; print(dnnsep.__file__)"],
                            capture_output=True, text=True, env=env, check=True).stdout  # fmt: skip
    assert origin.startswith(str(clone)), origin  # the venv's dnnsep is the scratch clone's
    again = subprocess.run(["bash", str(clone / "utils" / "setup.sh"), "test"], env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0 and "installing" not in again.stderr  # a repeated run installs nothing
