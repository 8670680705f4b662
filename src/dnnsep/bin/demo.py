"""Record a few seconds from the microphone and separate the voices in it.

    python -m dnnsep.bin.demo [--model PATH] [--duration 5] [--device_index I] [--sample_rate HZ] [--out_dir DIR]
    python -m dnnsep.bin.demo --list_devices

Records through PyAudio (16-bit mono) from the system's default input device (or
``--device_index``), at the model's sample rate when the device offers it, else at the device's
native rate and then resampled.  Separates on the best available device and writes, all or
nothing, ``<out_dir>/mixture.wav`` and ``estimated-0.wav``, ``estimated-1.wav``, ... (16-bit PCM,
each estimate at its level in the mixture, none clipping), and ``spectrograms.png`` when
matplotlib is installed.  The default model is the ``best.pth`` that ``train.sh`` makes with the
recipe's ``conf/default.yaml`` (see :func:`default_model_path`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import live
from ..audio import resample, write_wavs
from ..checkpoint import atomic_write
from ..cli import prog, run
from ..device import select_device
from ..errors import DnnsepError
from ..inference import protect_from_clipping, scale_estimates, separate_long
from ..pretrained import add_model_options, load_model

MIC_HELP = (
    "on macOS, allow microphone access for your terminal app in System Settings > Privacy & Security > Microphone"
)


# -- recording ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_stderr(enabled: bool = True) -> Iterator[None]:
    """Silence the C libraries' chatter on file descriptor 2 (ALSA, JACK) while PortAudio starts."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_portaudio(*, verbose: bool = False):
    """Import PyAudio and start PortAudio; returns ``(pyaudio module, PyAudio instance)``."""
    try:
        import pyaudio
    except ImportError:
        raise DnnsepError(
            "PyAudio is not installed: pip install 'dnnsep[demo]' (it needs PortAudio: "
            "`brew install portaudio` on macOS, `apt-get install portaudio19-dev` on Debian/Ubuntu)"
        ) from None
    with _quiet_stderr(not verbose):
        return pyaudio, pyaudio.PyAudio()


def input_devices(pa) -> list[dict]:
    """PortAudio's devices that have input channels (PyAudio's device-info dicts)."""
    infos = (pa.get_device_info_by_index(i) for i in range(pa.get_device_count()))
    return [info for info in infos if info.get("maxInputChannels", 0) > 0]


def default_input_index(pa) -> int | None:
    """The system's default input device (not simply device 0), or None when there is none."""
    try:
        return int(pa.get_default_input_device_info()["index"])
    except (OSError, KeyError):
        return None


def choose_device(pa, device_index: int | None) -> dict:
    """Device info of ``device_index``, else the default input device; clear errors when there is none."""
    devices = input_devices(pa)
    if device_index is not None:
        for info in devices:
            if info["index"] == device_index:
                return info
        raise DnnsepError(f"--device_index {device_index}: no such input device (see --list_devices)")
    if not devices:
        raise DnnsepError(
            "no audio input device found: connect or enable a microphone (check the system's sound "
            f"settings; {MIC_HELP}), then see --list_devices"
        )
    default = default_input_index(pa)
    return next((info for info in devices if info["index"] == default), devices[0])


def record(
    seconds: float,
    *,
    device_index: int | None = None,
    sample_rate: int,
    rate_is_required: bool = False,
    verbose: bool = False,
    progress: bool = True,
) -> tuple[np.ndarray, int, dict]:
    """Record ``seconds`` of 16-bit mono audio; returns ``(samples int16 (time,), rate, device info)``.

    Records at ``sample_rate`` when the device supports it, else (unless ``rate_is_required``) at
    the device's native rate.  Shows a bar labelled "Now recording..." that fills in real time.
    """
    pyaudio, pa = open_portaudio(verbose=verbose)
    try:
        info = choose_device(pa, device_index)
        index, name = int(info["index"]), info["name"]
        rate = sample_rate
        if not _supports(pa, pyaudio, index, rate, verbose=verbose):
            native = int(info["defaultSampleRate"])
            if rate_is_required or not _supports(pa, pyaudio, index, native, verbose=verbose):
                raise DnnsepError(
                    f"input device {index} ({name}) cannot record 16-bit mono at {rate} Hz; "
                    f"its native rate is {native} Hz: try --sample_rate {native}"
                )
            print(f"Recording at {native} Hz (the device's native rate), resampled afterwards.", file=sys.stderr)
            rate = native
        total = int(round(seconds * rate))
        block = max(1, min(total, rate // 20))  # 50 ms per read
        try:
            with _quiet_stderr(not verbose):
                stream = pa.open(
                    format=pyaudio.paInt16,
                    channels=1,
                    rate=rate,
                    input=True,
                    input_device_index=index,
                    frames_per_buffer=block,
                )
        except (OSError, ValueError) as err:
            raise DnnsepError(f"could not open input device {index} ({name}): {err}; {MIC_HELP}") from None
        chunks = []
        bar_format = "{desc} |{bar}| {n:.1f}/{total:.1f} s"
        try:
            with tqdm(total=total / rate, desc="Now recording...", bar_format=bar_format, disable=not progress) as bar:
                done = 0
                while done < total:
                    n = min(block, total - done)
                    chunks.append(stream.read(n, exception_on_overflow=False))  # blocks until recorded
                    done += n
                    bar.n = done / rate  # set, not added up: no rounding drift past the total
                    bar.update(0)  # redraws at most every 0.1 s
        except OSError as err:
            raise DnnsepError(f"recording from input device {index} ({name}) failed: {err}") from None
        finally:
            stream.close()
        print("Stop recording", file=sys.stderr)
        return np.frombuffer(b"".join(chunks), dtype="<i2").copy(), rate, info
    finally:
        with _quiet_stderr(not verbose):
            pa.terminate()


def _supports(pa, pyaudio, index: int, rate: int, *, verbose: bool = False) -> bool:
    try:
        with _quiet_stderr(not verbose):
            return bool(
                pa.is_format_supported(rate, input_device=index, input_channels=1, input_format=pyaudio.paInt16)
            )
    except ValueError:
        return False


def level_dbfs(audio: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for digital silence).

    Shape: audio (time,) float in [-1, 1].

    >>> round(level_dbfs(np.full(100, 0.5)), 2), level_dbfs(np.zeros(10))
    (-6.02, -inf)
    """
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


# -- spectrograms ------------------------------------------------------------------------------


def plot_spectrograms(path: str | os.PathLike, signals: dict[str, np.ndarray], sample_rate: int) -> str | None:
    """One spectrogram panel per signal, all on one colour scale (dB, 80 dB range); atomic write.

    Returns None, or a message saying why nothing was drawn (matplotlib missing).
    Shape: each signal (time,).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed, so no spectrograms.png: pip install 'dnnsep[plot]'"
    n_fft = 2 ** round(math.log2(0.032 * sample_rate))  # about 32 ms
    window = torch.hann_window(n_fft)
    specs = {}
    for title, x in signals.items():
        stft = torch.stft(
            torch.from_numpy(np.ascontiguousarray(x)), n_fft, n_fft // 4, window=window, return_complex=True
        )
        specs[title] = (20 * torch.log10(stft.abs() + 1e-8)).numpy()  # (freqs, frames)
    top = max(float(s.max()) for s in specs.values())
    seconds = len(next(iter(signals.values()))) / sample_rate
    fig = Figure(figsize=(8, 1.9 * len(specs) + 0.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(specs), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, spec) in zip(axes, specs.items()):
        image = ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80,
            vmax=top,
            extent=(0, seconds, 0, sample_rate / 2000),
        )
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(image, ax=list(axes), label="dB")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return None


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
    parser.add_argument("--no_plot", action="store_true", help="do not draw spectrograms.png")
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
    if rec_rate != rate:
        mixture = protect_from_clipping(resample(mixture, rec_rate, rate), peak=32767 / 32768)[0]

    start = time.perf_counter()
    estimates = separate_long(model, mixture, chunk_seconds=args.chunk_seconds or None, overlap=args.overlap)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    estimates = scale_estimates(estimates, mixture)  # (n_sources, time)

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
    """Delete ``estimated-<k>.wav`` left by an earlier run of a model with more sources."""
    for path in out_dir.glob("estimated-*.wav"):
        index = path.stem.split("-", 1)[1]
        if index.isdigit() and int(index) >= n_sources:
            path.unlink()


if __name__ == "__main__":
    run(main)
