"""Data-loading speed: milliseconds to read one batch of 4 x 4 s mixtures with a DataLoader of 2 workers.

    python bench/bench_data.py [--batches 60] [--workers 2] [--batch_size 4] [--seconds 4] [--dynamic_mixing]

Builds a synthetic corpus in LibriSpeech's layout (5-12 s utterances, like LibriSpeech's) and its
mixture lists in a temporary folder, then times a shuffled pass of ``MixtureDataset`` through a
``torch.utils.data.DataLoader``, after the first batch (worker start-up is reported apart).  The
consumer does nothing, so the figure is the loader's throughput: to keep a GPU busy it must be
well under the time of one training step.
"""

from __future__ import annotations

import argparse
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
from dnnsep.data import MixtureDataset, list_path
from dnnsep.data.synthetic import make_corpus


def bench_data(
    *,
    workers: int = 2,
    batch_size: int = 4,
    seconds: float = 4.0,
    batches: int = 60,
    dynamic_mixing: bool = False,
    workdir: str | Path | None = None,
    tiny: bool = False,
) -> dict:
    """Time ``batches`` batches; returns ``{'ms_per_batch', 'startup_ms', 'workers', 'batch_size', 'seconds'}``.

    ``tiny``: a small corpus of short utterances (a smoke run, not a figure).
    """
    corpus = dict(n_speakers=4, utts_per_speaker=2, seconds=(1.5, 3.0)) if tiny else \
        dict(n_speakers=12, utts_per_speaker=4, seconds=(5.0, 12.0))  # fmt: skip
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        make_corpus(tmp / "corpus", subsets=("train-clean-100", "dev-clean", "test-clean"), seed=0, **corpus)
        n_train = batch_size * (batches + 1) if tiny else max(400, batch_size * (batches + 1))
        argv = [str(tmp / "data"), "2", "--librispeech_root", str(tmp / "corpus"), "--no_progress",
                "--segment", str(seconds), "--n_train", str(n_train)]  # fmt: skip
        argv += ["--eval_segment", "1", "--n_valid", "2", "--n_test", "2"] if tiny else []
        prepare.main(argv)
        dataset = MixtureDataset(list_path(tmp / "data", 2, "train"), dynamic_mixing=dynamic_mixing)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        start = time.perf_counter()
        iterator = iter(loader)
        mixture, sources = next(iterator)
        startup = time.perf_counter() - start
        assert mixture.shape == (batch_size, round(seconds * 16000)) and sources.shape[1] == 2
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        elapsed = time.perf_counter() - start
        del iterator  # stop the workers
    return {
        "ms_per_batch": 1000 * elapsed / batches,
        "startup_ms": 1000 * startup,
        "workers": workers,
        "batch_size": batch_size,
        "seconds": seconds,
        "dynamic_mixing": dynamic_mixing,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--dynamic_mixing", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the main process")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--tiny", action="store_true", help="a small corpus of short utterances (the tests run it)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_data(
        workers=args.workers,
        batch_size=args.batch_size,
        seconds=args.seconds,
        batches=args.batches,
        dynamic_mixing=args.dynamic_mixing,
        tiny=args.tiny,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"data: {result['batch_size']} x {result['seconds']:g} s mixtures, {result['workers']} workers"
            f"{', dynamic mixing' if args.dynamic_mixing else ''}: {result['ms_per_batch']:.1f} ms/batch "
            f"(first batch after {result['startup_ms']:.0f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
