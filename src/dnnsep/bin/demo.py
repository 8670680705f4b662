"""Record a few seconds from the microphone and separate the voices in it.

    python -m dnnsep.bin.demo [--model PATH] [--duration 5] [--device_index I] [--sample_rate HZ] [--out_dir DIR]
    python -m dnnsep.bin.demo --list_devices

Records through PyAudio (16-bit mono) from the system's default input device (or
``--device_index``), at the model's sample rate when the device offers it, else at the device's
native rate and then resampled.  Separates on the best available device and writes, all or
nothing, ``<out_dir>/mixture.wav`` and ``estimated-0.wav``, ``estimated-1.wav``, ... (16-bit PCM,
each estimate at its level in the mixture, none clipping), and ``spectrograms.png`` when
matplotlib is installed; then ``report.html`` (:mod:`dnnsep.report`: players, a spectrogram strip
of each file, ``mixture.png`` and ``estimated-<i>.png``, the model and the time taken).  The
default model is the ``best.pth`` that ``train.sh`` makes with the recipe's most recent experiment
(see :func:`dnnsep.pretrained.default_model_path`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .. import live, report
from ..audio import resample, write_wavs
from ..capture import MIC_HELP, _quiet_stderr, default_input_index, input_devices, level_dbfs, open_portaudio, record
from ..cli import need_writable_directory, prog, run
from ..device import select_device
from ..errors import DnnsepError
from ..inference import protect_from_clipping, scale_estimates, separate_long
from ..plots import plot_spectrograms
from ..pretrained import add_model_options, load_model

# -- command line ------------------------------------------------------------------------------


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("python -m dnnsep.bin.demo"),
        description="Record from the microphone and separate the voices (writes WAV files and spectrograms).",
        allow_abbrev=False,
    )
    add_model_options(parser)
    parser.add_argument("--duration", type=float, default=5.0, metavar="SECONDS", help="recording length (default 5)")
    parser.add_argument("--device_index", type=int, metavar="I", help="input device (default: the system default)")
    parser.add_argument(
        "--sample_rate", type=int, metavar="HZ", help="recording rate (default: the model's, else the device's native)"
    )
    parser.add_argument("--out_dir", metavar="DIR", help="where to write (default: <recipe_dir>/results)")
    parser.add_argument("--list_devices", action="store_true", help="list the input devices and exit")
    parser.add_argument(
        "--silence_dbfs", type=float, default=-60.0, metavar="DB", help="refuse recordings quieter than this (-60)"
    )
    parser.add_argument(
        "--chunk_seconds", type=float, default=8.0, metavar="S", help="separate in chunks of this length (8; 0: never)"
    )
    parser.add_argument("--overlap", type=float, default=0.25, metavar="F", help="chunk overlap, a fraction (0.25)")
    parser.add_argument("--no_plot", action="store_true", help="draw no spectrograms (spectrograms.png, the report's)")
    parser.add_argument("--verbose", action="store_true", help="show PortAudio's own messages")
    live.add_options(parser)
    return parser


def list_devices(verbose: bool = False) -> int:
    pyaudio, pa = open_portaudio(verbose=verbose)
    try:
        devices, default = input_devices(pa), default_input_index(pa)
    finally:
        with _quiet_stderr(not verbose):
            pa.terminate()
    if not devices:
        print("No audio input devices found.", file=sys.stderr)
        return 1
    print("Input devices (* = system default):")
    for info in devices:
        mark = "*" if info["index"] == default else " "
        channels, rate = info["maxInputChannels"], int(info["defaultSampleRate"])
        print(f" {mark} {info['index']:>3}  {info['name']}  ({channels} channels, {rate} Hz)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.list_devices:
        return list_devices(args.verbose)
    if args.live:
        return live.main(args)
    if not args.duration > 0 or (args.sample_rate is not None and args.sample_rate < 1000):
        raise DnnsepError("--duration must be positive and --sample_rate at least 1000 Hz")
    if args.chunk_seconds < 0 or not 0 < args.overlap <= 0.5:
        raise DnnsepError("need --chunk_seconds >= 0 and 0 < --overlap <= 0.5")
    device = select_device(args.device)
    model, model_path = load_model(args.model, recipe_dir=args.recipe_dir, device=device)  # before recording
    rate = model.sample_rate
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.recipe_dir) / "results"
    out_dir = need_writable_directory(out_dir, what="--out_dir")  # before recording: nothing is lost

    pcm, rec_rate, info = record(
        args.duration,
        device_index=args.device_index,
        sample_rate=args.sample_rate or rate,
        rate_is_required=args.sample_rate is not None,
        verbose=args.verbose,
    )
    mixture = pcm.astype(np.float32) / 32768.0  # (time,)
    level = level_dbfs(mixture)
    if level < args.silence_dbfs:
        raise DnnsepError(
            f"the recording from input device {info['index']} ({info['name']}) is silent "
            f"({level:.0f} dBFS, below {args.silence_dbfs:g} dBFS): check that the microphone is on and "
            f"not muted; {MIC_HELP}"
        )
    recording = mixture
    if rec_rate != rate:  # the model runs at its rate; the files are at the recording's (said below)
        mixture = protect_from_clipping(resample(mixture, rec_rate, rate), peak=32767 / 32768)[0]

    start = time.perf_counter()
    estimates = separate_long(model, mixture, chunk_seconds=args.chunk_seconds or None, overlap=args.overlap)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    estimates = scale_estimates(estimates, mixture)  # (n_sources, time)
    if rec_rate != rate:  # back to the recording's rate and length
        estimates = protect_from_clipping(resample(estimates, rate, rec_rate)[:, : len(recording)], peak=0.99)[0]
        print(f"note: recorded at {rec_rate} Hz, separated at the model's {rate} Hz; files at {rec_rate} Hz",
              file=sys.stderr)  # fmt: skip
    mixture, rate = recording, rec_rate

    files = {out_dir / "mixture.wav": mixture}
    files.update({out_dir / f"estimated-{i}.wav": est for i, est in enumerate(estimates)})
    write_wavs(files, rate)
    _remove_stale_estimates(out_dir, len(estimates))
    written = list(files)
    note = None
    if not args.no_plot:
        signals = {"mixture": mixture, **{f"estimated-{i}": est for i, est in enumerate(estimates)}}
        note = plot_spectrograms(out_dir / "spectrograms.png", signals, rate)
        if note is None:
            written.append(out_dir / "spectrograms.png")
    if out_dir / "spectrograms.png" not in written and (out_dir / "spectrograms.png").exists():
        (out_dir / "spectrograms.png").unlink()  # from an earlier run: would not match these files
    facts = {
        "model": model_path,
        "model type": model.model_name,
        "recorded from": f"input device {info['index']} ({info['name']}) at {rec_rate} Hz",
        "separated in": f"{seconds:.2f} s on {device}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    page, drawn = report.recording_report(
        out_dir, list(files), title="Demo recording", facts=facts, draw=not args.no_plot
    )
    if not drawn:
        for path in files:
            path.with_suffix(".png").unlink(missing_ok=True)  # from an earlier run: would not match these files
    written += [path.with_suffix(".png") for path in files if drawn] + [page]
    print(
        f"Separated {len(mixture) / rate:.1f} s into {len(estimates)} voices in {seconds:.2f} s on {device} "
        f"(model: {model_path})"
    )
    for path in written:
        print(f"  {path}")
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _remove_stale_estimates(out_dir: Path, n_sources: int) -> None:
    """Delete ``estimated-<k>.wav`` (and its strip ``.png``) left by an earlier run of a model with more sources."""
    for path in [*out_dir.glob("estimated-*.wav"), *out_dir.glob("estimated-*.png")]:
        index = path.stem.split("-", 1)[1]
        if index.isdigit() and int(index) >= n_sources:
            path.unlink()


if __name__ == "__main__":
    run(main)
