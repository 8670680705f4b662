"""The recipe end to end on a generated corpus: prepare, train 2 epochs, resume 1, test (about a minute).

The shell fronts are sourced from ``bash -c`` and ``zsh -c`` and run with ``bash``, as users do.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from dnnsep.checkpoint import load_checkpoint
from dnnsep.training import experiment_dir, load_config
from dnnsep.training.evaluation import optional_metrics

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "librispeech" / "dprnn_tasnet"
TINY_YAML = """\
extends: {mini}
dataset_dir: {data}
prepare:
  subsets: [dev-clean, dev-clean, dev-clean]
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
  kernel_size: 16
  hidden: 8
  chunk_size: 50  # short LSTM sequences: CPU time grows with them, not with the width
  hop_size: 25
  n_blocks: 1
epochs: 3
num_workers: 0
device: cpu
lr: 2.0e-3  # the seed mini config's training, whatever mini.yaml's levers are today
dynamic_mixing: false
speed_perturb: 0.0
loss_threshold: null
warmup_steps: 0
lr_schedule: plateau
lr_clock: steps
max_minutes: null
"""

pytestmark = pytest.mark.slow


def sh(shell: str, script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``script`` in ``shell -c`` (or ``bash script...`` when shell is 'run'), failing loudly."""
    argv = ["bash", *script.split("\0")] if shell == "run" else [shell, "-c", script]
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"{argv} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def test_prepare_train_resume_test(tmp_path):
    """Offline: run.sh --synthetic makes and prepares its own corpus, so the README's command needs no download."""
    conf = tmp_path / "tiny.yaml"
    conf.write_text(TINY_YAML.format(mini=RECIPE / "conf" / "mini.yaml", data=tmp_path / "data"))
    out = tmp_path / "exp"
    data = tmp_path / "data-synthetic"  # a synthetic corpus never mixes with real data
    exp = experiment_dir(load_config(conf, {"dataset_dir": str(data)}), out)
    assert exp.relative_to(out).as_posix() == (
        "2mix/trainable-trainable/sisdr/N8_L16_H8_K50_P25_B1/S8_F8_sigmoid_gln_noncausal_sr16k/"
        "b4_e3_adamw-lr2e-3-decay5e-2_clip5/seed111"  # mini.yaml's 2 CPU processes share each batch of 4
    )
    common = f'--synthetic --config "{conf}" --out_dir "{out}"'

    # stage 0 of run.sh, sourced from bash; the user's shell lives on and `set -e` does not leak
    done = sh("bash", f". ./run.sh --stop_stage 0 {common}; "
                      'echo "rc=$?"; false; echo alive', RECIPE)  # fmt: skip
    assert done.stdout.strip().splitlines()[-2:] == ["rc=0", "alive"]
    assert (data / "synthetic" / "LibriSpeech" / "dev-clean").is_dir() and not (tmp_path / "data").exists()
    # only the subsets the lists are drawn from are synthesised (training's gets half the voice variants)
    assert [p.name for p in (data / "synthetic" / "LibriSpeech").iterdir() if p.is_dir()] == ["dev-clean"]
    assert all((data / "2mix" / f"{split}.json").is_file() for split in ("train", "valid", "test"))

    # train 2 of 3 epochs, sourced from zsh, from another directory (relative paths are the user's)
    sh("zsh", f'. "{RECIPE}/train.sh" --config tiny.yaml --dataset_dir data-synthetic --stop_after_epoch 2 exp',
       tmp_path)  # fmt: skip
    last = exp / "model" / "last.pth"
    assert load_checkpoint(last)["progress"]["epoch"] == 2

    # running into the existing experiment without MODEL_PATH: one line, no traceback, no overwrite
    before = last.read_bytes()
    refused = subprocess.run(["bash", "-c", f'. "{RECIPE}/train.sh" --config tiny.yaml --dataset_dir data-synthetic '
                              'exp; echo "rc=$?"'], cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert refused.stdout.strip() == "rc=2" and "Traceback" not in refused.stderr
    assert "experiment exists already; to continue it, pass" in refused.stderr and last.read_bytes() == before

    # resume for the last epoch: train.sh OUT_DIR MODEL_PATH, run with bash
    sh("run", "\0".join(["train.sh", "--config", str(conf), "--dataset_dir", str(data), str(out), str(last)]), RECIPE)
    state = load_checkpoint(last)
    assert state["progress"]["epoch"] == 3 and state["progress"]["stopped"].startswith("finished 3 epochs")
    assert len(state["history"]["valid_loss"]) == 3
    for name in ("config.yaml", "environment.yaml", "model/best.pth", "model/last.pth", "log/train.log",
                 "loss/loss.csv", "loss/loss.png"):  # fmt: skip
        assert (exp / name).is_file(), name
    log = (exp / "log" / "train.log").read_text()
    assert "resumed from" in log and "epoch 3/3" in log and "valid SI-SDRi" in log

    # a rerun without --synthetic finds the offline data in place: no network probe, no corpus made again
    done = sh("bash", f'. ./run.sh --stop_stage 0 --config "{conf}" --out_dir "{out}"', RECIPE)
    assert "using the synthetic corpus prepared earlier" in done.stderr and "cannot be reached" not in done.stderr
    assert "synthesised with" not in done.stderr and "from synthetic dev-clean" in done.stderr

    # stages 1-2 of run.sh, sourced from zsh: the finished training is left as it is, then the test
    done = sh("zsh", f". ./run.sh --stage 1 {common}", RECIPE)
    assert "nothing to do: training had ended" in done.stderr and "SI-SDRi" in done.stdout
    assert load_checkpoint(last)["progress"] == state["progress"]
    result = exp / "eval" / "test-best"
    with open(result / "results.csv") as f:
        rows = list(csv.DictReader(f))
    extra = [k for k in ("pesq", "stoi") if k in optional_metrics()]
    assert list(rows[0]) == ["id", "seconds", "si_sdr", "si_sdri", "sdr", "sdri", *extra] and len(rows) == 4
    summary = json.loads((result / "summary.json").read_text())
    assert math.isfinite(summary["si_sdri"]["mean"]) and math.isfinite(summary["sdri"]["mean"])
    assert len(list((result / "examples").glob("*/s1.wav"))) == 4  # --n_examples defaults to 5
    best = torch.load(exp / "model" / "best.pth", weights_only=True)
    assert best["kind"] == "dnnsep-model" and best["model_args"]["n_filters"] == 8

    # test.sh itself, sourced from zsh
    done = sh("zsh", '. ./test.sh --help; echo "rc=$?"', RECIPE)
    assert "MODEL_PATH" in done.stdout and done.stdout.strip().endswith("rc=0")
