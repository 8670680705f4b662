"""Evaluate a trained model on the test list:  python -m dnnsep.bin.evaluate MODEL_PATH [options]

Writes, under ``<experiment>/eval/<split>-<model>/`` (or ``--out_dir``):

- ``results.csv``: one row per mixture (``id, seconds, si_sdr, si_sdri, sdr, sdri[, pesq, stoi]``),
- ``summary.json``: mean, std and count of each column, with the model and list used; for a list
  in rooms or noise (:mod:`dnnsep.data.scene`), ``by_condition``: SI-SDR(i) means by RT60 bin
  (:data:`RT60_BINS`) and by SNR bin (:data:`SNR_BINS`), whose per-mixture values are in
  ``results.csv`` too (columns ``rt60``, ``snr_db``),
- ``examples/<id>/``: the first ``--n_examples`` mixtures as WAVs (``mixture.wav``, estimates
  ``s1.wav``.. in reference order, references ``s1_ref.wav``..),
- ``report.html`` (:mod:`dnnsep.report`): the summary, plots (with matplotlib), and every mixture in
  a table sortable by any column, worst SI-SDRi first; the ``--report_rows`` worst and best have
  players and spectrograms, their WAVs (unless among the examples) and PNGs in ``report/<id>/``.

SDR/SDRi need ``fast_bss_eval`` (``pip install fast_bss_eval``); PESQ and STOI are added when the
``pesq`` / ``pystoi`` packages are installed.  A malformed list, a model whose output is not finite,
and a full or read-only output disk are one-line errors.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from .. import report
from ..audio import write_wavs
from ..checkpoint import remove_stale_temporaries
from ..cli import need_directory, os_error, printable, prog, run
from ..device import guard_mps, select_device
from ..errors import DnnsepError
from ..pretrained import load_model
from ..training.evaluation import columns, optional_metrics, summarize, utterance_scores
from ..training.experiment import Experiment
from ..training.records import write_text

RT60_BINS = (0.0, 0.3, 0.6, math.inf)  # seconds: dry-ish, medium, reverberant rooms
SNR_BINS = (-math.inf, 0.0, 5.0, 10.0, math.inf)  # dB
CONDITIONS = {"rt60": (RT60_BINS, "s"), "snr_db": (SNR_BINS, "dB")}


def _missing(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is None


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("python -m dnnsep.bin.evaluate"),
        description="Separate every mixture of a list and score it (SI-SDR, SI-SDRi, SDR, SDRi, PESQ, STOI).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "model_path",
        nargs="?",
        metavar="MODEL_PATH",
        help="model/best.pth (or last.pth) of an experiment (default: the most recent experiment's best.pth)",
    )
    parser.add_argument("--model", dest="model_option", metavar="PATH", help="the same as MODEL_PATH")
    parser.add_argument("--recipe_dir", default=".", help=argparse.SUPPRESS)
    parser.add_argument("--dataset_dir", help="prepared dataset (default: the one the model was trained on)")
    parser.add_argument(
        "--split", default="test", choices=("test", "valid", "train"), help="which list (default: test)"
    )
    parser.add_argument("--out_dir", help="where results go (default: <experiment>/eval/<split>-<model name>)")
    parser.add_argument(
        "--reverb_target",
        choices=("reverberant", "direct"),
        help="in rooms, the references: each voice as heard, or its direct path and early reflections "
        "(default: what the model was trained to give)",
    )
    parser.add_argument("--n_examples", type=int, default=5, help="mixtures written as WAVs (default: 5)")
    parser.add_argument("--max_utterances", type=int, help="evaluate only the first N mixtures")
    parser.add_argument(
        "--report_rows",
        type=int,
        default=10,
        metavar="N",
        help="the N worst and N best mixtures get players and spectrograms in report.html (default: 10; 0: none)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu; the default), cpu, cuda, cuda:N or mps"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from ..data import MixtureDataset, list_path

    if args.n_examples < 0:
        raise DnnsepError(f"--n_examples must be >= 0, got {args.n_examples}")
    if args.max_utterances is not None and args.max_utterances < 1:
        raise DnnsepError(f"--max_utterances must be >= 1, got {args.max_utterances}")
    if args.report_rows < 0:
        raise DnnsepError(f"--report_rows must be >= 0, got {args.report_rows}")
    given = args.model_option or args.model_path
    # the one way tools load a model: a checkpoint, a published model's file or folder, or hf:OWNER/NAME
    model, model_path = load_model(given, recipe_dir=args.recipe_dir, device="cpu")
    dnnsep_file = model.provenance.get("format") == "dnnsep" and model_path.is_file()
    trained_with = model.trained_with  # a dnnsep checkpoint's training config: the data it learnt from
    dataset_dir = args.dataset_dir or trained_with.get("dataset_dir")
    if not dataset_dir or not isinstance(dataset_dir, str):
        raise DnnsepError(f"{model_path}: does not say which data it was trained on; pass --dataset_dir")
    dataset_dir = need_directory(dataset_dir, what="the dataset folder")
    lst = list_path(dataset_dir, model.config.n_sources, args.split)
    if not lst.is_file():
        raise DnnsepError(
            f"{lst}: no such mixture list; prepare the data (egs/librispeech/common/prepare.sh) or pass --dataset_dir"
        )
    target = args.reverb_target or trained_with.get("reverb_target")  # what it learnt in rooms
    with _reading(lst):
        data = MixtureDataset(lst, reverb_target=target)
    if data.sample_rate != model.sample_rate:
        raise DnnsepError(f"{lst}: {data.sample_rate} Hz, but {model_path} separates {model.sample_rate} Hz audio")
    if not args.out_dir and not dnnsep_file:  # a published model's folder, or the hub's cache: not there
        name = re.sub(r"[^\w.-]+", "_", str(given).rstrip("/").split("/")[-1]) or "model"
        args.out_dir = str(Path(args.recipe_dir) / "results" / "eval" / f"{args.split}-{name}")
    out_dir = need_directory(args.out_dir or default_out_dir(model_path, args.split), what="--out_dir")
    device = select_device(None if args.device == "auto" else args.device)
    model, device = guard_mps(model.to(device).eval())  # on MPS: checked against the CPU first
    remove_stale_temporaries(out_dir)

    metrics = optional_metrics()
    names = columns(metrics)
    left_out = [name for name, package in (("SDR/SDRi", "fast_bss_eval"), ("PESQ", "pesq"), ("STOI", "pystoi"))
                if _missing(package)]  # fmt: skip
    if left_out:
        print(f"note: no {', '.join(left_out)}: their packages are not installed (pip install -e '.[eval]')")
    n = len(data) if args.max_utterances is None else min(len(data), args.max_utterances)
    rows, details, extremes, start = [], [], report.Extremes(args.report_rows), time.perf_counter()
    for index in tqdm(range(n), desc=f"evaluate {args.split}", unit="mix", dynamic_ncols=True):
        with _reading(lst, index):
            mixture, sources = data[index]  # (time,), (n_sources, time)
        estimates = model.separate(mixture.to(device)).cpu()  # (n_sources, time)
        mix_id = str(data.mixture_id(index) if hasattr(data, "mixture_id") else index)
        if not torch.isfinite(estimates).all():
            raise DnnsepError(
                f"{model_path}: the model gave NaN or infinite output for mixture {printable(mix_id, limit=80)} "
                f"of {lst}; the model is broken"
            )
        scores = utterance_scores(estimates, sources, mixture, sample_rate=data.sample_rate, metrics=metrics)
        conditions = data.conditions(index) if hasattr(data, "conditions") else {}
        rows.append({"id": mix_id, "seconds": mixture.shape[-1] / data.sample_rate, **scores, **conditions})
        details.append(
            {"input_si_sdr": scores["si_sdr"] - scores["si_sdri"], "level_diff": level_difference(sources),
             "speakers": " + ".join(str(src.get("speaker", "?")) for src in data.spec(index)[1])}
        )  # fmt: skip
        extremes.offer(scores["si_sdri"], index, (mixture, estimates, sources))
        if index < args.n_examples:
            folder = out_dir / "examples" / _safe(mix_id)
            remove_stale_temporaries(folder, quiet=True)
            with _writing(folder):
                write_example(folder, mixture, estimates, sources, data.sample_rate)
    if not rows:
        raise DnnsepError(f"{lst}: no mixtures to evaluate")
    seconds = time.perf_counter() - start

    with _writing(out_dir):
        held = [key for key in CONDITIONS if any(key in row for row in rows)]
        write_csv(out_dir / "results.csv", rows, ("id", "seconds", *names, *held))
    summary = {
        "model": str(model_path.resolve()),
        "list": str(lst.resolve()),
        "split": args.split,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        **summarize(rows, names),
    }
    if held:
        summary["by_condition"] = by_condition(rows, held)
    with _writing(out_dir):
        write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    means = "  ".join(
        f"{name.upper().replace('_', '-').replace('SDRI', 'SDRi')} {summary[name]['mean']:.2f}" for name in names
    )
    print(f"{args.split}: {len(rows)} mixtures  {means}")
    for key, table in summary.get("by_condition", {}).items():
        cells = "  ".join(f"{b['bin']}: {b['si_sdri']:.2f} dB ({b['count']})" for b in table)
        print(f"  SI-SDRi by {key.replace('_db', '')}: {cells}")
    print(f"results: {out_dir / 'results.csv'}, {out_dir / 'summary.json'}")

    start = time.perf_counter()
    facts = {
        "model": summary["model"],
        "model type": model.model_name,
        "model config": model.config.to_dict(),
        "list": summary["list"],
        "split": args.split,
        "mixtures": len(rows),
        "date": summary["date"],
        "evaluated": f"in {seconds:.1f} s on {device}",
    }
    if left_out:
        facts["not computed"] = f"{', '.join(left_out)} (pip install -e '.[eval]')"
    with _writing(out_dir):
        clips = write_report_rows(out_dir, rows, extremes.chosen(), args.n_examples, data.sample_rate)
        page = report.write_eval_report(
            out_dir,
            [{**row, **detail} for row, detail in zip(rows, details)],
            names=names,
            facts=facts,
            chosen=clips,
            sample_rate=data.sample_rate,
            title=f"{args.split}: {model_path.name} of {model_path.parent.parent.name or model_path.parent}",
        )
    print(f"report: {page} (written in {time.perf_counter() - start:.1f} s)")
    return 0


def by_condition(rows: list[dict], keys: Sequence[str]) -> dict[str, list[dict]]:
    """Per condition (``rt60``, ``snr_db``), the mean SI-SDR and SI-SDRi and the count of each bin
    (:data:`CONDITIONS`) that holds mixtures.

    >>> rows = [{"si_sdr": 5.0, "si_sdri": 9.0, "rt60": 0.2}, {"si_sdr": 1.0, "si_sdri": 4.0, "rt60": 0.7}]
    >>> by_condition(rows, ["rt60"])["rt60"][1]
    {'bin': '>=0.6 s', 'count': 1, 'si_sdr': 1.0, 'si_sdri': 4.0}
    """
    out = {}
    for key in keys:
        edges, unit = CONDITIONS[key]
        table = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            chosen = [r for r in rows if key in r and lo <= r[key] < hi]
            if chosen:
                label = (
                    f"<{hi:g} {unit}"
                    if math.isinf(lo)
                    else f">={lo:g} {unit}"
                    if math.isinf(hi)
                    else f"{lo:g}-{hi:g} {unit}"
                )
                means = {name: sum(r[name] for r in chosen) / len(chosen) for name in ("si_sdr", "si_sdri")}
                table.append({"bin": label, "count": len(chosen), **means})
        out[key] = table
    return out


def level_difference(sources: torch.Tensor) -> float:
    """dB between the loudest and the quietest source (NaN with a silent one).  Shape: sources (n_sources, time)."""
    power = sources.double().square().mean(-1)  # (n_sources,)
    if float(power.min()) <= 0:
        return math.nan
    return float(10 * torch.log10(power.max() / power.min()))


def write_report_rows(
    out_dir: Path, rows: list[dict], chosen: dict[int, tuple], n_examples: int, sample_rate: int
) -> dict[int, list[report.Clip]]:
    """The clips of the rows that get players: their WAVs are the example's (``examples/<id>/``) or written
    to ``report/<id>/``, where their strips go; row folders of an earlier run are removed.

    Shape: each of ``chosen`` holds mixture (time,), estimates (n_sources, time), references (n_sources, time).
    """
    clips = {}
    for index, (mixture, estimates, references) in chosen.items():
        name = _safe(rows[index]["id"])
        signals = example_signals(mixture, estimates, references)
        folder, assets = out_dir / "examples" / name, out_dir / "report" / name
        if index >= n_examples:
            folder = assets
            remove_stale_temporaries(folder, quiet=True)
            write_wavs({folder / f"{key}.wav": signal for key, signal in signals.items()}, sample_rate)
        order = ["mixture"] + [f"s{k + 1}{end}" for k in range(len(references)) for end in ("_ref", "")]
        clips[index] = [report.Clip(_label(key), folder / f"{key}.wav", assets / f"{key}.png", signals[key])
                        for key in order]  # fmt: skip
    report.remove_stale_rows(out_dir / "report", {_safe(rows[i]["id"]) for i in chosen})
    return clips


def _label(key: str) -> str:
    """``mixture``, ``reference 1`` for ``s1_ref``, ``estimate 1`` for ``s1``."""
    if key == "mixture":
        return key
    return f"reference {key[1:-4]}" if key.endswith("_ref") else f"estimate {key[1:]}"


@contextlib.contextmanager
def _reading(lst: Path, index: int | None = None) -> Iterator[None]:
    """A malformed list (missing keys, wrong types) read in the block becomes a one-line error naming it."""
    try:
        yield
    except DnnsepError:
        raise
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as err:
        where = "" if index is None else f" at mixture {index}"
        what = f"missing key {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise DnnsepError(
            f"{lst}: malformed mixture list{where} ({printable(what, limit=120)}); rerun prepare with --overwrite"
        ) from None


@contextlib.contextmanager
def _writing(where: Path) -> Iterator[None]:
    """A full or read-only disk in the block becomes a one-line error naming ``where``."""
    try:
        yield
    except OSError as err:
        raise os_error(err, where) from None


def default_out_dir(model_path: Path, split: str) -> Path:
    """``<experiment>/eval/<split>-<model stem>`` for ``<experiment>/model/<stem>.pth``, else beside the file."""
    experiment = Experiment.holding(model_path) or Experiment(model_path.parent)
    return experiment.eval_dir(split, model_path.stem)


def write_csv(path: Path, rows: list[dict], fields: Sequence[str]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, out.getvalue())


def write_example(
    folder: Path, mixture: torch.Tensor, estimates: torch.Tensor, references: torch.Tensor, sample_rate: int
) -> None:
    """Mixture, estimates (in reference order) and references as 16-bit WAVs, scaled together to avoid clipping.

    Shape: mixture (time,), estimates (n_sources, time), references (n_sources, time).
    """
    signals = example_signals(mixture, estimates, references)
    write_wavs({folder / f"{name}.wav": signal for name, signal in signals.items()}, sample_rate)


def example_signals(
    mixture: torch.Tensor, estimates: torch.Tensor, references: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``{"mixture", "s1", "s1_ref", ...}``: estimate ``k`` matched to reference ``k`` by the permutation of the
    best SI-SDR (as scored), all scaled by one gain so that none clips.

    Shape: mixture (time,), estimates (n_sources, time), references (n_sources, time) -> each (time,).
    """
    from ..losses import pit_si_sdr, reorder

    perm = pit_si_sdr(estimates[None].double(), references[None].double()).perm
    ordered = reorder(estimates[None], perm)[0]
    peak = max(float(t.abs().max()) for t in (mixture, ordered, references))
    gain = 0.99 / peak if peak > 0.99 else 1.0
    signals = {"mixture": mixture}
    for k in range(len(references)):
        signals[f"s{k + 1}"] = ordered[k]
        signals[f"s{k + 1}_ref"] = references[k]
    return {name: signal * gain for name, signal in signals.items()}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


if __name__ == "__main__":
    run(main)
