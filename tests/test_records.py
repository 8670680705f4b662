"""What an experiment records: a command that runs again, records a no-op rerun leaves alone, and
test.sh naming the metrics it leaves out."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "egs" / "librispeech" / "dprnn_tasnet" / "conf" / "mini.yaml"
pytestmark = pytest.mark.slow
TINY = """\
extends: {mini}
dataset_dir: {data}
model: {{n_filters: 8, hidden: 8, n_blocks: 1}}
epochs: 1
num_workers: 0
device: cpu
"""


def run(argv, **kw):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, f"{argv}:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("records")
    run([sys.executable, "-m", "dnnsep.bin.make_corpus", str(tmp / "corpus"), "--engine", "numpy",
         "--n_speakers", "3", "--utts_per_speaker", "2", "--seconds", "1.5", "2", "--quiet"])  # fmt: skip
    run([sys.executable, "-m", "dnnsep.bin.prepare", str(tmp / "data"), "2", "--librispeech_root", str(tmp / "corpus"),
         "--segment", "1", "--eval_segment", "1", "--n_train", "4", "--n_valid", "2", "--n_test", "2",
         "--no_progress"])  # fmt: skip
    return tmp / "data"


def test_the_recorded_command_runs_again_and_a_no_op_rerun_leaves_the_records(dataset, tmp_path):
    conf = tmp_path / "tiny.yaml"
    conf.write_text(TINY.format(mini=MINI, data=dataset))
    out = tmp_path / "exp"
    run([sys.executable, "-m", "dnnsep.bin.train", "--config", str(conf), str(out)], cwd=tmp_path)
    (exp,) = (p.parents[1] for p in out.glob("**/model/last.pth"))
    env = yaml.safe_load((exp / "environment.yaml").read_text())
    assert env["command"].split()[:3] == [Path(sys.executable).name, "-m", "dnnsep.bin.train"], env["command"]
    weights = torch.load(exp / "model" / "last.pth", weights_only=True)["state_dict"]

    # the recorded command, run again from the recorded directory, makes the same experiment
    moved = tmp_path / "first"
    exp.rename(moved)
    python = str(Path(sys.executable).parent / shlex.split(env["command"])[0])
    run([python, *shlex.split(env["command"])[1:]], cwd=env["cwd"])
    again = torch.load(exp / "model" / "last.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(again[k], weights[k]) for k in weights)

    # a rerun that does nothing (the training had ended) leaves config.yaml and environment.yaml alone
    records = {name: (exp / name).read_bytes() for name in ("config.yaml", "environment.yaml")}
    log_before = (exp / "log" / "train.log").read_text()
    run([sys.executable, "-m", "dnnsep.bin.train", "--config", str(conf), str(out), str(exp / "model" / "last.pth")],
        cwd=tmp_path)  # fmt: skip
    assert {name: (exp / name).read_bytes() for name in records} == records
    log = (exp / "log" / "train.log").read_text()
    assert log.startswith(log_before) and "nothing to do: training had ended" in log[len(log_before) :]


def test_test_sh_names_the_metrics_it_leaves_out(dataset, tmp_path, monkeypatch, capsys):
    from dnnsep import DPRNNConfig, DPRNNTasNet
    from dnnsep.bin import evaluate
    from dnnsep.training import evaluation

    model = tmp_path / "m.pth"
    DPRNNTasNet(DPRNNConfig(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1)).save(model)
    monkeypatch.setattr(evaluate, "_missing", lambda package: package in ("pesq", "pystoi"))
    real = evaluation.optional_metrics
    monkeypatch.setattr(evaluate, "optional_metrics", lambda: {k: v for k, v in real().items() if k in ("sdr", "sdri")})
    assert evaluate.main([str(model), "--dataset_dir", str(dataset), "--out_dir", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "note: no PESQ, STOI: their packages are not installed (pip install -e '.[eval]')" in out
