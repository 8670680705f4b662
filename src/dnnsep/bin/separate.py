"""Separate the voices in audio files:  python -m dnnsep.bin.separate INPUT [--model PATH] [--out_dir DIR]

INPUT is an audio file or a directory (searched recursively for audio files, with a progress bar).
Any sample rate (resampled to the model's), any channel count (downmixed, with a note), 16/24/32-bit,
float, FLAC, OGG...  For ``<input>/a/b.flac`` it writes ``<out_dir>/a/b/estimated-0.wav``,
``estimated-1.wav``, ... (16-bit PCM at the model's rate, each estimate at its level in the
mixture, none clipping).  Long files are separated in overlapping chunks with bounded memory
(``--chunk_seconds``, ``--overlap``; see :mod:`dnnsep.inference`).  Existing outputs are not
replaced without ``--overwrite``.  In a directory, a file that cannot be read is reported and
skipped, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from ..audio import AUDIO_EXTENSIONS, read_audio, write_wavs
from ..cli import run
from ..device import select_device
from ..errors import AudioError, DnnsepError
from ..inference import scale_estimates, separate_long
from ..pretrained import add_model_options, load_model

MIN_SECONDS = 0.1  # shorter inputs are refused: too short to hold speech, or to separate meaningfully


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dnnsep.bin.separate",
        description="Separate the voices in an audio file, or in every audio file under a directory.",
        allow_abbrev=False,
    )
    parser.add_argument("input", metavar="INPUT", help="an audio file or a directory of them")
    add_model_options(parser)
    parser.add_argument("--out_dir", metavar="DIR", help="where to write (default: <recipe_dir>/results/separated)")
    parser.add_argument(
        "--chunk_seconds",
        type=float,
        default=8.0,
        metavar="S",
        help="separate longer inputs in chunks of this length (default 8; 0: always in one pass)",
    )
    parser.add_argument(
        "--overlap", type=float, default=0.25, metavar="F", help="chunk overlap, a fraction of a chunk (default 0.25)"
    )
    parser.add_argument("--batch_size", type=int, default=1, metavar="N", help="chunks per model call (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def find_inputs(root: Path, exclude: Path | None = None) -> list[Path]:
    """Audio files under ``root`` (by extension, hidden ones and those under ``exclude`` left out), sorted."""
    excluded = exclude.resolve() if exclude is not None else None
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.suffix.lower() not in AUDIO_EXTENSIONS or any(part.startswith(".") for part in rel.parts):
            continue
        if excluded is not None and excluded in path.resolve().parents:
            continue
        if path.is_file():
            found.append(path)
    return found


def output_paths(out_dir: Path, rel: Path, n_sources: int) -> list[Path]:
    """``<out_dir>/<rel without suffix>/estimated-<i>.wav`` for each source."""
    return [out_dir / rel.with_suffix("") / f"estimated-{i}.wav" for i in range(n_sources)]


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.chunk_seconds < 0 or not 0 < args.overlap <= 0.5 or args.batch_size < 1:
        raise DnnsepError("need --chunk_seconds >= 0, 0 < --overlap <= 0.5 and --batch_size >= 1")
    source = Path(args.input).expanduser()
    out_dir = Path(args.out_dir).expanduser() if args.out_dir else Path(args.recipe_dir) / "results" / "separated"
    if source.is_dir():
        inputs = [(path, path.relative_to(source)) for path in find_inputs(source, exclude=out_dir)]
        if not inputs:
            raise DnnsepError(f"{source}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this directory")
    elif source.exists():
        inputs = [(source, Path(source.name))]
    else:
        raise AudioError(f"{source}: no such file or directory")

    device = select_device(args.device)
    model, model_path = load_model(args.model, recipe_dir=args.recipe_dir, device=device)
    n_sources = model.config.n_sources
    if not args.overwrite:
        existing = [p for _, rel in inputs for p in output_paths(out_dir, rel, n_sources) if p.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise DnnsepError(f"{existing[0]} already exists{more}: pass --overwrite to replace")

    chunk_seconds = args.chunk_seconds or None
    single = len(inputs) == 1
    failed, audio_seconds, start = [], 0.0, time.perf_counter()
    bar = tqdm(inputs, desc="separating", unit="file", disable=single, file=sys.stderr)
    for path, rel in bar:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                mixture, _ = read_audio(path, sample_rate=model.sample_rate, min_seconds=MIN_SECONDS)
            for warning in caught:
                tqdm.write(f"note: {warning.message}", file=sys.stderr)
        except AudioError as err:
            if single:
                raise
            tqdm.write(f"error: {err}", file=sys.stderr)
            failed.append(path)
            continue
        estimates = separate_long(
            model,
            mixture,
            chunk_seconds=chunk_seconds,
            overlap=args.overlap,
            batch_size=args.batch_size,
            progress=single,
        )
        estimates = scale_estimates(estimates, mixture)  # the unscaled array is freed here
        targets = output_paths(out_dir, rel, len(estimates))
        write_wavs(dict(zip(targets, estimates)), model.sample_rate)
        audio_seconds += len(mixture) / model.sample_rate
        if single:
            print("\n".join(str(p) for p in targets))
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    done = len(inputs) - len(failed)
    print(
        f"Separated {done} file(s), {audio_seconds:.1f} s of audio, in {elapsed:.1f} s on {device} "
        f"into {out_dir} (model: {model_path})",
        file=sys.stderr,
    )
    if failed:
        print(f"error: {len(failed)} of {len(inputs)} file(s) could not be read (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run(main)
