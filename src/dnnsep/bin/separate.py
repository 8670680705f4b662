"""Separate the voices in audio files:  python -m dnnsep.bin.separate INPUT [--model PATH] [--out_dir DIR]

INPUT is an audio file or a directory (searched recursively for audio files, with a progress bar).
Any sample rate (resampled to the model's, and the estimates back, with a note), any channel count
(downmixed, with a note), 16/24/32-bit, float, FLAC, OGG...  For ``<input>/a/b.flac`` it writes
``<out_dir>/a/b/estimated-0.wav``, ``estimated-1.wav``, ... (16-bit PCM at the input's rate and
length, each estimate at its level in the mixture, none clipping).  Inputs whose names differ only in
extension or case (``b.wav`` and ``b.flac``, ``B.wav`` and ``B.WAV``) keep their extension in the output
folder's name (``b.wav/``, ``b.flac/``), so no two inputs share one, even on a case-insensitive disk (see
:func:`output_names`).

Long files are separated in overlapping chunks with bounded memory (``--chunk_seconds``,
``--overlap``; see :mod:`dnnsep.inference`).  The estimates of one input are written all or
nothing (temporary files, renamed once all are complete); temporaries left by an interrupted run
are removed at the next start.  Existing outputs are not replaced without ``--overwrite``;
``--skip_existing`` leaves the inputs whose outputs all exist and separates the others.  In a
directory, an input that fails (unreadable, too short, or the model's output is not finite) is
reported on one line, the others are separated, and the exit status is 1.

Unless ``--no_report``, each input's folder also gets ``mixture.wav`` (the input, mono, at its
rate) and, with matplotlib, a spectrogram strip of it and of each estimate
(``mixture.png``, ``estimated-<i>.png``); ``<out_dir>/report.html`` (:mod:`dnnsep.report`) has, for
each input of the run (those skipped too), players for them, the model and the time taken.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
import unicodedata
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import report
from ..audio import AUDIO_EXTENSIONS, read_audio, resample, write_wavs
from ..checkpoint import remove_stale_temporaries
from ..cli import check_number, need_directory, os_error, printable, prog, run
from ..device import select_device
from ..errors import AudioError, DnnsepError
from ..inference import protect_from_clipping, scale_estimates, separate_long
from ..pretrained import add_model_options, load_model

MIN_SECONDS = 0.1  # shorter inputs are refused: too short to hold speech, or to separate meaningfully
MAX_CHUNK_SECONDS = 1e6  # --chunk_seconds beyond this is a typo (use 0 for one pass)
_FATAL_WRITE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS, errno.EACCES, errno.EPERM}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("python -m dnnsep.bin.separate"),
        description="Separate the voices in an audio file, or in every audio file under a directory.",
        allow_abbrev=False,
    )
    parser.add_argument("input", metavar="INPUT", help="an audio file or a directory of them")
    add_model_options(parser)
    parser.add_argument("--out_dir", metavar="DIR", help="where to write (default: results/separated in the recipe)")
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
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument(
        "--skip_existing", action="store_true", help="leave inputs whose outputs all exist; separate the others"
    )
    parser.add_argument(
        "--no_report", action="store_true", help="write only the estimates: no report.html, mixture.wav or PNGs"
    )
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


def _key(path: Path) -> str:
    """How a case-insensitive, normalising disk (macOS, Windows) compares names."""
    return unicodedata.normalize("NFC", path.as_posix()).casefold()


def output_names(rels: Sequence[Path]) -> list[Path]:
    """The output folder of each input (relative to the output directory), distinct even ignoring case.

    An input's folder is its relative path without extension; inputs that would share one (ignoring
    case) keep their extension instead; any still sharing one (``A.wav`` and ``a.WAV``) get ``~2``,
    ``~3``, ... in sorted (code point) order, after the first.

    >>> [str(p) for p in output_names([Path("a.wav"), Path("A.flac"), Path("x/b.wav"), Path("y/b.wav")])]
    ['a.wav', 'A.flac', 'x/b', 'y/b']
    >>> [str(p) for p in output_names([Path("A.wav"), Path("A.WAV")])]
    ['A.wav~2', 'A.WAV']
    """
    stems = [rel.with_suffix("") if rel.suffix else rel for rel in rels]
    by_stem: dict[str, list[int]] = defaultdict(list)
    for i, stem in enumerate(stems):
        by_stem[_key(stem)].append(i)
    first = [rels[i] if len(by_stem[_key(stem)]) > 1 else stem for i, stem in enumerate(stems)]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(first):
        groups[_key(name)].append(i)
    taken = set(groups)
    names = list(first)
    for members in groups.values():
        for i in sorted(members, key=lambda i: rels[i].as_posix())[1:]:
            n = 2
            while _key(first[i].with_name(f"{first[i].name}~{n}")) in taken:
                n += 1
            names[i] = first[i].with_name(f"{first[i].name}~{n}")
            taken.add(_key(names[i]))
    return names


def output_paths(out_dir: Path, name: Path, n_sources: int) -> list[Path]:
    """``<out_dir>/<name>/estimated-<i>.wav`` for each source (``name`` from :func:`output_names`)."""
    return [out_dir / name / f"estimated-{i}.wav" for i in range(n_sources)]


def check_targets(targets: dict[Path, list[Path]]) -> None:
    """Refuse, before anything is written, outputs that two inputs share (ignoring case), a file where
    an output folder goes, or a folder where an output file goes."""
    owner: dict[str, Path] = {}
    folders: dict[str, Path] = {}
    for source, paths in targets.items():
        for path in paths:
            clash = owner.get(_key(path))
            if clash is not None:
                raise DnnsepError(f"{source} and {clash} would both be written to {path}; rename one of them")
            owner[_key(path)] = source
            if path.is_dir():
                raise DnnsepError(f"{path}: is a directory, where the estimate of {source} goes; move it away")
            folders.setdefault(_key(path.parent), path.parent)
    for key, folder in folders.items():
        if key in owner:
            raise DnnsepError(f"{owner[key]}'s output {folder} is also the output folder of another input")
        if folder.exists() and not folder.is_dir():
            raise DnnsepError(f"{folder}: is a file, where the outputs of an input go; move it away")


def _list(paths: Sequence[Path], limit: int = 3) -> str:
    more = f" (and {len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(str(p) for p in paths[:limit]) + more


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    check_number("--chunk_seconds", args.chunk_seconds, low=MIN_SECONDS, high=MAX_CHUNK_SECONDS, allow=(0,))
    check_number("--overlap", args.overlap, low=0, high=0.5, low_open=True)
    if args.batch_size < 1:
        raise DnnsepError(f"--batch_size must be at least 1, got {args.batch_size}")
    source = Path(args.input).expanduser()
    out_dir = Path(args.out_dir).expanduser() if args.out_dir else Path(args.recipe_dir) / "results" / "separated"
    out_dir = need_directory(out_dir, what="--out_dir")
    if source.is_dir():
        found = find_inputs(source, exclude=out_dir)
        if not found:
            raise DnnsepError(f"{source}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this directory")
        names = output_names([path.relative_to(source) for path in found])
        inputs = list(zip(found, names))
    elif source.exists():
        inputs = [(source, Path(source.name).with_suffix("") if source.suffix else Path(source.name))]
    else:
        raise AudioError(f"{source}: no such file or directory")

    device = select_device(args.device)
    model, model_path = load_model(args.model, recipe_dir=args.recipe_dir, device=device)
    chunk = round(args.chunk_seconds * model.sample_rate)
    if args.chunk_seconds and round(args.overlap * chunk) < 1:
        raise DnnsepError(f"--overlap {args.overlap} of a {args.chunk_seconds} s chunk is less than one sample")
    n_sources = model.config.n_sources
    targets = {path: output_paths(out_dir, name, n_sources) for path, name in inputs}
    check_targets(targets)

    skip: set[Path] = set()
    if not args.overwrite:
        existing = {path: [p for p in paths if p.exists()] for path, paths in targets.items()}
        done = [path for path, paths in targets.items() if len(existing[path]) == len(paths)]
        partial = [p for path, found in existing.items() if 0 < len(found) < n_sources for p in found]
        if partial and args.skip_existing:
            raise DnnsepError(
                f"{_list(partial)} already exist, but not all the outputs of their inputs: "
                "pass --overwrite to replace them"
            )
        if args.skip_existing:
            skip = set(done)
        elif partial or done:
            clash = [p for found in existing.values() for p in found]
            verb = "exists" if len(clash) == 1 else "exist"
            raise DnnsepError(
                f"{_list(clash)} already {verb}: pass --overwrite to replace them, "
                "or --skip_existing to separate only the inputs without outputs"
            )
    listed, inputs = inputs, [(path, name) for path, name in inputs if path not in skip]
    skipped = len(skip)
    if skipped:
        print(f"skipping {skipped} input(s) whose outputs all exist in {out_dir} (--skip_existing)", file=sys.stderr)
    for folder in dict.fromkeys(paths[0].parent for path, paths in targets.items()):
        remove_stale_temporaries(folder)

    chunk_seconds = args.chunk_seconds or None
    single = not source.is_dir()
    failed, separated, audio_seconds, start = {}, 0, 0.0, time.perf_counter()
    items: dict[Path, report.Item] = {}
    drawn = True
    fatal: DnnsepError | None = None
    bar = tqdm(inputs, desc="separating", unit="file", disable=single or not inputs, file=sys.stderr)
    for path, name in bar:
        try:
            began = time.perf_counter()
            seconds, clips, ok = separate_one(model, model_path, path, targets[path], args, chunk_seconds, single)
            audio_seconds += seconds
            separated += 1
            if clips is not None:
                facts = {
                    "input": path,
                    "length": f"{seconds:.1f} s",
                    "separated in": f"{time.perf_counter() - began:.2f} s",
                }
                items[path], drawn = report.Item(name.as_posix(), facts, clips), drawn and ok
        except OSError as err:
            if err.errno in _FATAL_WRITE or single:  # the disk refuses: the other inputs would fail too
                fatal = os_error(err, targets[path][0])
                break
            failed[path] = str(os_error(err, targets[path][0]))
            tqdm.write(f"error: {printable(failed[path])}", file=sys.stderr)
        except DnnsepError as err:
            if single:
                raise
            failed[path] = str(err)
            tqdm.write(f"error: {printable(err, limit=2000)}", file=sys.stderr)
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    counts = [f"{n} {what}" for n, what in ((skipped, "skipped"), (len(failed), "failed")) if n]
    print(
        f"Separated {separated} file(s)" + (f" ({', '.join(counts)})" if counts else "")
        + f", {audio_seconds:.1f} s of audio, in {elapsed:.1f} s on {device} into {out_dir} (model: {model_path})",
        file=sys.stderr,
    )  # fmt: skip
    if fatal is not None:
        raise fatal
    if not args.no_report:
        facts = {
            "model": model_path,
            "model type": model.model_name,
            "inputs": ", ".join([f"{separated} separated", *counts]),
            "time": f"{audio_seconds:.1f} s of audio in {elapsed:.1f} s on {device}",
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        for path, name in listed:
            if path in skip:
                items[path] = earlier_item(name, path, targets[path])
        try:
            page = report.write_listen_report(
                out_dir,
                [items[path] for path, _ in listed if path in items],
                title=f"Separated by {model_path.name}",
                facts=facts,
                failed={str(path): error for path, error in failed.items()},
                drawn=drawn,
            )
        except OSError as err:
            raise os_error(err, out_dir / report.PAGE) from None
        print(f"report: {page}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(targets)} file(s) failed (see above)", file=sys.stderr)
        return 1
    return 0


def separate_one(
    model, model_path: Path, path: Path, targets: list[Path], args, chunk_seconds, single: bool
) -> tuple[float, list[report.Clip] | None, bool]:
    """Read, separate and write one input (all its estimates or none, with ``mixture.wav`` unless ``--no_report``),
    then draw the strips; returns its length in seconds, its clips for the report (None with ``--no_report``)
    and whether the strips were drawn (not without matplotlib).

    Raises a one-line :class:`DnnsepError` for this input's failures (the caller goes on to the next
    input), ``OSError`` when writing fails.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        original, input_rate = read_audio(path, min_seconds=MIN_SECONDS)
    for warning in caught:
        tqdm.write(f"note: {printable(warning.message)}", file=sys.stderr)
    rate = model.sample_rate  # the model runs at its own rate; the outputs are at the input's
    mixture = original if input_rate == rate else resample(original, input_rate, rate)
    if input_rate != rate:
        tqdm.write(f"note: {printable(path)}: {input_rate} Hz resampled to the model's {rate} Hz; outputs at "
                   f"{input_rate} Hz", file=sys.stderr)  # fmt: skip
    try:
        estimates = separate_long(
            model,
            mixture,
            chunk_seconds=chunk_seconds,
            overlap=args.overlap,
            batch_size=args.batch_size,
            progress=single,
        )
    except torch.cuda.OutOfMemoryError:  # on a GPU; the CPU allocator's failure is a RuntimeError
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise DnnsepError(
            f"{path}: out of memory while separating {len(mixture) / model.sample_rate:.1f} s; "
            "try a smaller --chunk_seconds or --batch_size, or --device cpu"
        ) from None
    if not np.isfinite(estimates).all():
        raise DnnsepError(
            f"{model_path}: the model gave NaN or infinite output for {path} (the input is finite): "
            "the model is broken; use another --model"
        )
    estimates = scale_estimates(estimates, mixture)  # the unscaled array is freed here
    if input_rate != rate:  # back to the input's rate and length
        estimates = resample(estimates, rate, input_rate)[:, : len(original)]
        estimates = protect_from_clipping(estimates, peak=0.99)[0]  # the resampler's ripple stays below full scale
    files = dict(zip(targets, estimates))
    folder, seconds = targets[0].parent, len(original) / input_rate
    if not args.no_report:  # after the estimates, which are written in the same order as without it
        files[folder / "mixture.wav"] = protect_from_clipping(original, peak=0.99)[0]
    write_wavs(files, input_rate)
    if single:
        print("\n".join(str(p) for p in targets))
    if args.no_report:
        return seconds, None, False
    clips = [report.Clip(_label(wav), wav, wav.with_suffix(".png"), audio) for wav, audio in files.items()]
    clips.insert(0, clips.pop())  # the mixture first
    drawn = report.draw_strips(clips, input_rate)
    return seconds, [clip._replace(audio=None, png=clip.png if drawn else None) for clip in clips], drawn


def earlier_item(name: Path, path: Path, targets: list[Path]) -> report.Item:
    """The report item of an input skipped by ``--skip_existing``: its files of an earlier run, as they are."""
    wavs = [p for p in [targets[0].parent / "mixture.wav", *targets] if p.is_file()]
    clips = [report.Clip(_label(wav), wav, wav.with_suffix(".png") if wav.with_suffix(".png").is_file() else None)
             for wav in wavs]  # fmt: skip
    return report.Item(name.as_posix(), {"input": path, "separated": "by an earlier run (--skip_existing)"}, clips)


def _label(wav: Path) -> str:
    """``input`` for ``mixture.wav``, ``estimated voice <i>`` for ``estimated-<i>.wav``."""
    return "input" if wav.stem == "mixture" else wav.stem.replace("estimated-", "estimated voice ")


if __name__ == "__main__":
    run(main)
