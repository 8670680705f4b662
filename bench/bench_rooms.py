"""What rooms and noise cost a training step: data time per step with and without them, at the mini config.

    python bench/bench_rooms.py [--steps 60] [--bank 0 64] [--room_life 1 4] [--dry_share 0 0.75] [--out F] [--tiny]

Builds a synthetic corpus and 1-s training lists (mini.yaml's segment) in a temporary folder, then
times, in one process and one thread (as each of mini.yaml's two CPU processes runs), the items of
``steps`` steps of 2 mixtures each (its batch of 4 shared by 2 processes) under dynamic mixing with
speed perturbation: dry and clean, then in simulated rooms (RT60 0.1-0.8 s, direct-path targets) with
synthetic noise, once per ``--bank`` (rooms shared by an epoch's mixtures, 0: one per mixture), ``--room_life``
(epochs each bank room serves; keys ``..._bank{n}x{life}`` above 1) and ``--dry_share`` (the share of
mixtures left dry and clean; keys ``..._dry{share}``).  conf/mini_noisy_reverb.yaml has a bank of 64, each
room serving 4 epochs, and three quarters of the mixtures dry: ``slowdown_bank64x4_dry0.75``.  The epochs timed follow
one untimed epoch, as the job's hundred-odd epochs do (its first epoch simulates a whole bank; later ones renew
a ``1 / room_life`` of it).
A training step of conf/mini_noisy_reverb.yaml's DPRNN on the same batch is timed too, so the figure that matters is
``slowdown``: the extra data time over (clean data + step).  ``--tiny``: a few steps of a tiny model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    from dnnsep.bin import prepare
except ImportError:  # a fresh clone without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from dnnsep.bin import prepare
from main_job import RECIPE, cpu

from dnnsep.data import MixtureDataset, list_path
from dnnsep.data.noise import NoiseOptions
from dnnsep.data.rooms import RoomOptions
from dnnsep.data.scene import SceneOptions
from dnnsep.data.synthetic import make_corpus
from dnnsep.losses import pit_si_sdr
from dnnsep.models import DPRNNConfig, DPRNNTasNet
from dnnsep.training.config import load_config

NOISY_JOB = RECIPE / "conf" / "mini_noisy_reverb.yaml"  # the job whose steps rooms and noise would slow down
TINY = dict(n_filters=8, kernel_size=16, hidden=8, chunk_size=50, hop_size=25, n_blocks=1)


def data_seconds(dataset: MixtureDataset, items: int, epochs: int) -> float:
    """Seconds per item over ``epochs`` epochs of the first ``items`` items (each epoch new draws), after
    one untimed epoch."""
    for epoch in range(epochs + 1):
        if epoch == 1:
            start = time.perf_counter()
        dataset.set_epoch(epoch)
        for i in range(items):
            dataset[i]
    return (time.perf_counter() - start) / (items * epochs)


def step_seconds(model: torch.nn.Module, batch: int, frames: int, steps: int) -> float:
    """Seconds per training step (forward, PIT SI-SDR, backward, Adam) on random mixtures."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mixture, sources = torch.randn(batch, frames), torch.randn(batch, 2, frames)
    for k in range(steps + 2):
        if k == 2:
            start = time.perf_counter()
        loss = pit_si_sdr(model(mixture), sources).loss.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def bench_rooms(
    *, steps: int, banks: list[int], lives: list[int], shares: list[float], tiny: bool, workdir: str | None = None
) -> dict:
    torch.set_num_threads(1)
    per_step, frames = 2, 16000
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        make_corpus(tmp / "corpus", subsets=("train-clean-100", "dev-clean", "test-clean"), n_speakers=8,
                    utts_per_speaker=3, seconds=(2.0, 4.0), seed=0)  # fmt: skip
        prepare.main([str(tmp / "data"), "2", "--librispeech_root", str(tmp / "corpus"), "--no_progress",
                      "--segment", "1", "--eval_segment", "1", "--n_train", str(steps * per_step)])  # fmt: skip
        path = list_path(tmp / "data", 2, "train")
        items, epochs = steps * per_step, 1 if tiny else 4
        clean = MixtureDataset(path, dynamic_mixing=True, speed_perturb=0.1)
        data_seconds(MixtureDataset(path, dynamic_mixing=True, speed_perturb=0.1), min(items, 4), 1)  # the file cache
        result = {
            "steps": steps,
            "items_per_step": per_step,
            "clean_ms_per_step": 1e3 * per_step * data_seconds(clean, items, epochs),
        }
        for bank, life, share in _settings(banks, lives, shares):
            opts = SceneOptions(room=RoomOptions(), noise=NoiseOptions(source="synthetic"), room_bank=bank,
                                room_life=life, dry_share=share)  # fmt: skip
            noisy = MixtureDataset(path, dynamic_mixing=True, speed_perturb=0.1, scene=opts, reverb_target="direct")
            warm = MixtureDataset(path, dynamic_mixing=True, speed_perturb=0.1, scene=opts, reverb_target="direct")
            data_seconds(warm, min(items, 4), 1)  # imports (pyroomacoustics, scipy) outside the timing
            result[f"rooms_noise_{_tag(bank, life, share)}_ms_per_step"] = (
                1e3 * per_step * data_seconds(noisy, items, epochs)
            )
    model = DPRNNTasNet(DPRNNConfig(**TINY) if tiny else load_config(NOISY_JOB).model_config)
    result["train_step_ms"] = 1e3 * step_seconds(model, per_step, frames, 2 if tiny else 20)
    base = result["clean_ms_per_step"] + result["train_step_ms"]
    for bank, life, share in _settings(banks, lives, shares):
        extra = result[f"rooms_noise_{_tag(bank, life, share)}_ms_per_step"] - result["clean_ms_per_step"]
        result[f"slowdown_{_tag(bank, life, share)}"] = extra / base
    result["cpu"] = cpu()
    return result


def _settings(banks: list[int], lives: list[int], shares: list[float]) -> list[tuple[int, int, float]]:
    """(bank, life, share) to time: a room life only with a bank."""
    return sorted({(b, life if b else 1, s) for b, life, s in itertools.product(banks, lives, shares)})


def _tag(bank: int, life: int, share: float) -> str:
    return f"bank{bank}" + (f"x{life}" if life > 1 else "") + (f"_dry{share:g}" if share else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="steps timed per epoch (2 mixtures each)")
    parser.add_argument("--bank", type=int, nargs="+", default=[0, 64], help="room_bank values to time")
    parser.add_argument("--room_life", type=int, nargs="+", default=[1, 4], help="room_life values (with a bank)")
    parser.add_argument("--dry_share", type=float, nargs="+", default=[0.0, 0.75], help="dry_share values to time")
    parser.add_argument("--tiny", action="store_true", help="a few steps of a tiny model (a smoke test)")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args(argv)
    result = bench_rooms(steps=3 if args.tiny else args.steps, banks=args.bank, lives=args.room_life,
                         shares=args.dry_share, tiny=args.tiny)  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
