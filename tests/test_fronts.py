"""The shell fronts users type: identical in every recipe, named in their help, leaving nothing behind
in the user's shell (sourced from bash and zsh), and printing nothing of their own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EGS = ROOT / "egs" / "librispeech"
RECIPES = ("dprnn_tasnet", "conv_tasnet")
FRONTS = ("run", "train", "test", "separate", "demo")
ALL = [EGS / r / f"{f}.sh" for r in RECIPES for f in FRONTS] + [EGS / "common" / "prepare.sh"]


def test_every_recipe_has_the_same_fronts_and_copies_no_shell_logic():
    for front in FRONTS:
        texts = {(EGS / r / f"{front}.sh").read_text() for r in RECIPES}
        assert len(texts) == 1, f"{front}.sh differs between recipes"
    for recipe in RECIPES:
        scripts = sorted(p.relative_to(EGS / recipe).as_posix() for p in (EGS / recipe).rglob("*.sh"))
        assert scripts == sorted(f"{f}.sh" for f in FRONTS), recipe  # no local/ copies of the template
        assert (EGS / recipe / "conf" / "default.yaml").is_file() and (EGS / recipe / "conf" / "mini.yaml").is_file()


@pytest.mark.parametrize("script", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_help_names_the_front_and_prints_nothing_else(script):
    done = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script.name}"), done.stdout[:200]
    assert "python -m dnnsep" not in done.stdout and "--recipe_dir" not in done.stdout
    assert "local/" not in done.stderr and done.stderr.strip() == "", done.stderr[:300]


LIST_VARS = {"bash": "compgen -v | sort", "zsh": "print -l ${(k)parameters} | sort"}


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_sourcing_a_front_leaves_no_variable_and_keeps_the_shell(shell, tmp_path):
    for script in ALL:
        code = (
            f"{LIST_VARS[shell]} > {tmp_path}/before; "
            f'. "{script}" --help > /dev/null 2>&1; rc=$?; unset rc_unused; '
            f"{LIST_VARS[shell]} > {tmp_path}/after; "
            f"echo status=$rc; diff {tmp_path}/before {tmp_path}/after | grep '^>' "
            "| grep -v -e ' rc$' -e ' _$' -e ' PIPESTATUS$'; "
            "echo alive"
        )
        done = subprocess.run([shell, "-c", code], capture_output=True, text=True, timeout=120)
        lines = done.stdout.strip().splitlines()
        assert lines[0] == "status=0" and lines[-1] == "alive", (script, done.stdout, done.stderr)
        assert lines[1:-1] == [], f"{script} leaves {lines[1:-1]} in {shell}"


def test_a_failing_front_returns_its_status_to_the_sourcing_shell():
    script = EGS / "dprnn_tasnet" / "train.sh"
    done = subprocess.run(
        ["bash", "-c", f'. "{script}" --no_such_option 1 x > /dev/null 2>&1; echo "rc=$?"; echo alive'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["rc=2", "alive"]
