"""Time of writing evaluate's ``report.html`` for a large test list, against the evaluation's own time.

Makes ``--rows`` synthetic result rows (default 3000, a LibriSpeech test list's size), keeps the
``--report_rows`` worst and best by SI-SDRi with their audio (``--seconds`` long, two voices) as
evaluate does, and times what evaluate adds for the report: the WAVs and spectrogram strips of the
kept rows, the three plots and the page with every row in its table.  Then times the evaluation of
``--measure`` mixtures of that length as evaluate does them (the default-size DPRNN-TasNet, random
weights: the same compute; every metric whose package is installed) and scales it to ``--rows``.
The issue's target: the report in under 10% of the evaluation's time.  States the CPU.

    python bench/bench_report.py [--rows 3000] [--seconds 4] [--report_rows 10] [--threads 2] [--json FILE]
    python bench/bench_report.py --tiny     # seconds: 300 rows, a tiny model (the test suite runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dnnsep import models, report
from dnnsep.bin.evaluate import write_report_rows
from dnnsep.training.evaluation import columns, optional_metrics, utterance_scores

SR = 16000
TINY = dict(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform``) and its logical CPU count."""
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs)"


def voices(seconds: float, seed: int) -> torch.Tensor:
    """Two speech-like voices: noise through a syllable-rate envelope.  Shape: (2, time)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for k in range(2):
        smooth = np.convolve(rng.standard_normal(len(t)), np.ones(8) / 8, mode="same")
        envelope = np.sin(2 * np.pi * (3 + k) * t + rng.uniform(0, 6)) ** 2
        out.append(0.1 * smooth * envelope)
    return torch.tensor(np.stack(out), dtype=torch.float32)


def synthetic_rows(n: int, seconds: float, names: tuple[str, ...]) -> list[dict]:
    """Result rows as evaluate makes them (and the columns only the report shows)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        a, b = rng.integers(100, 9000, 2)
        row = {"id": f"{a}-{a + 1}-{i % 97:04d}_{b}-{b + 7}-{i % 89:04d}", "seconds": seconds, "speakers": f"{a} + {b}"}
        row.update({name: float(rng.normal(10, 4)) for name in names})
        row.update(input_si_sdr=float(rng.normal(0, 2.5)), level_diff=float(rng.uniform(0, 5)))
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each mixture (default 4)")
    parser.add_argument("--report_rows", type=int, default=10, help="worst and best rows with players (default 10)")
    parser.add_argument("--measure", type=int, default=3, help="mixtures evaluated to estimate its time (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--tiny", action="store_true", help="300 rows and a tiny model: a quick check that it runs")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.measure = 300, 1
    torch.set_num_threads(args.threads)
    metrics = optional_metrics()
    names = columns(metrics)
    print(f"cpu: {cpu_name()}; torch {torch.__version__}, {args.threads} threads", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows = synthetic_rows(args.rows, args.seconds, names)
        start = time.perf_counter()
        keeper = report.Extremes(args.report_rows)
        for i, row in enumerate(rows):
            keeper.offer(row["si_sdri"], i, i)  # evaluate keeps the audio; made here for the kept rows only
        offered = time.perf_counter() - start
        chosen = {}
        for i in keeper.chosen():
            sources = voices(args.seconds, seed=i)  # (2, time)
            estimates = sources.flip(0) + 0.05 * torch.randn_like(sources)
            chosen[i] = (sources.sum(0), estimates, sources)
        start = time.perf_counter()
        clips = write_report_rows(out, rows, chosen, 0, SR)
        page = report.write_eval_report(
            out, rows, names=names, facts={"model": "synthetic"}, chosen=clips, sample_rate=SR, title="bench"
        )
        written = time.perf_counter() - start + offered
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        html_kb = page.stat().st_size / 1024
    print(f"report for {args.rows} rows ({len(chosen)} with players, {args.seconds:g} s mixtures): {written:.2f} s "
          f"({html_kb:.0f} kB page, {size:.1f} MB folder)", flush=True)  # fmt: skip

    torch.manual_seed(0)
    cls = models.get("dprnn_tasnet")
    model = cls(cls.config_class(**TINY) if args.tiny else None).eval()
    start = time.perf_counter()
    for i in range(args.measure):
        sources = voices(args.seconds, seed=10_000 + i)
        mixture = sources.sum(0)
        estimates = model.separate(mixture)
        utterance_scores(estimates, sources, mixture, sample_rate=SR, metrics=metrics)
    each = (time.perf_counter() - start) / args.measure
    evaluation = each * args.rows
    what = "a tiny DPRNN-TasNet" if args.tiny else "the default DPRNN-TasNet (random weights)"
    print(f"evaluation: {each:.2f} s a mixture with {what} and {', '.join(names)}; x {args.rows} = {evaluation:.0f} s")
    share = written / evaluation
    print(f"report / evaluation: {100 * share:.2f}% ({'within' if share < 0.1 else 'OVER'} the 10% target)")
    if args.json:
        result = {"cpu": cpu_name(), "threads": args.threads, "rows": args.rows, "seconds": args.seconds,
                  "report_s": round(written, 3), "evaluation_s_per_mixture": round(each, 3),
                  "evaluation_s": round(evaluation, 1), "share": round(share, 5)}  # fmt: skip
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
