"""Live separation from the microphone: ``python -m dnnsep.bin.demo --live [--seconds N] [--play K]``.

Captures 16-bit mono at the model's sample rate in blocks of ``--block_ms`` (a PortAudio callback
puts every block on a queue, so nothing captured is dropped while separation catches up), separates
each block as it comes, and writes ``<out_dir>/mixture.wav``
and ``estimated-<k>.wav`` (16-bit PCM) as it goes.  The estimates are the model's output as it is
(not rescaled to the mixture's level as the offline demo does: that needs the whole recording) and
lag the mixture by the model's latency; each file holds all of its voice, the same length as the
mixture.  ``--play K`` plays voice K to the default output device.  At the end it writes
``report.html`` (:mod:`dnnsep.report`: players and spectrogram strips of the files it wrote).

A causal model (the default: the most recent causal experiment's ``best.pth``) streams with
:class:`dnnsep.streaming.StreamingSeparator`, its output equal to the offline model's at the model's
latency (``config.latency``: a chunk of frames for DPRNN, one window for Conv-TasNet).  Any other
model (``--model``: a non-causal experiment, a published separator) looks ahead, so it is run on
overlapping windows of ``--window_seconds`` as they fill (:class:`dnnsep.inference.ChunkedStream`,
the output of ``separate.sh``'s chunked pass over the recording), and the voices come that much later.

It stops after ``--seconds`` of audio, or on Ctrl-C or SIGTERM: it then separates what is still
queued (when stopped by ``--seconds``) or not (when interrupted), flushes the model's last
``latency`` samples and closes the files, which are written under temporary names and renamed into
place when complete.  A status line shows the time, a level meter per voice, the real-time factor
(compute time / audio time) and, when separation falls behind, how much audio waits.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from . import report
from .audio import StreamResampler
from .device import select_device
from .errors import DnnsepError
from .inference import ChunkedStream, chunk_plan
from .pretrained import load_model
from .streaming import StreamingSeparator, guard_mps_stream, not_streamable

METER_DB = 60  # the level meter's range, in dB below full scale
# torch intra-op threads while streaming on CPU: a DPRNN chunk's LSTMs run at batch 1, which a second
# thread does not speed up, while it makes the slowest blocks slower (bench/bench_streaming.py; the
# figures are in bench/README.md)
LIVE_THREADS = 1
WINDOW_OVERLAP = 0.25  # a model that looks ahead: the fraction of a window shared with the next


def add_options(parser: argparse.ArgumentParser) -> None:
    """The demo's live options (``--live``, ``--seconds``, ``--play``, ``--block_ms``, ``--threads``,
    ``--window_seconds``)."""
    group = parser.add_argument_group("live separation (--live)")
    group.add_argument(
        "--live", action="store_true", help="separate as you speak (default: a causal model; out_dir results/live)"
    )
    group.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds (default: at Ctrl-C)")
    group.add_argument("--play", type=int, metavar="K", help="play voice K to the default output device")
    group.add_argument("--block_ms", type=float, default=20.0, metavar="MS", help="capture block (default 20 ms)")
    group.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"CPU threads for separation (default {LIVE_THREADS} for a causal model: a stream's kernels are "
        "too small to share; all for windows)",
    )
    group.add_argument(
        "--window_seconds",
        type=float,
        default=2.0,
        metavar="S",
        help="a model that looks ahead runs on windows of S seconds, overlapping by a quarter: the voices "
        "come S seconds late (default 2)",
    )


def main(args: argparse.Namespace) -> int:
    """The demo's ``--live`` mode (its parsed arguments): load, check, open the devices, run, report."""
    if args.seconds is not None and not args.seconds > 0:
        raise DnnsepError("--seconds must be positive")
    if not 1 <= args.block_ms <= 1000:
        raise DnnsepError("--block_ms must be in 1..1000")
    if args.threads is not None and args.threads < 1:
        raise DnnsepError("--threads must be at least 1")
    if not 0.1 <= args.window_seconds <= 60:
        raise DnnsepError("--window_seconds must be in 0.1..60")
    model, model_path = load_model(
        args.model, recipe_dir=args.recipe_dir, device=select_device(args.device), causal=True
    )
    if args.play is not None and not 0 <= args.play < model.n_sources:
        voices = model.n_sources
        raise DnnsepError(f"--play {args.play}: the model separates {voices} voices (0..{voices - 1})")
    if args.sample_rate is not None and args.sample_rate < 1000:
        raise DnnsepError("--sample_rate must be at least 1000 Hz")
    why = not_streamable(model)
    if why is None:
        if model.device.type == "mps":  # load_model checked the offline pass on MPS; the stream runs other code
            model = guard_mps_stream(model)
        engine = StreamingSeparator(model)
        n_threads = args.threads or LIVE_THREADS
    else:  # it looks ahead: windows as they fill
        plan = dict(sample_rate=model.sample_rate, chunk_seconds=args.window_seconds, overlap=WINDOW_OVERLAP)
        chunk, fade = chunk_plan(model, **plan, length=None)
        engine = ChunkedStream(model, chunk=chunk, fade=fade)
        n_threads = args.threads or torch.get_num_threads()
        print(
            f"note: {why.split('; ')[0]}: separated in {args.window_seconds:g} s windows overlapping by "
            f"{100 * WINDOW_OVERLAP:g}%, so the voices come {args.window_seconds:g} s late",
            file=sys.stderr,
        )
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.recipe_dir) / "results" / "live"
    rate = model.sample_rate
    on_cpu = model.device.type == "cpu"
    threads = f", {n_threads} thread{'s' if n_threads > 1 else ''}" if on_cpu else ""
    print(
        f"model: {model_path}; latency {1000 * engine.latency / rate:.0f} ms + {args.block_ms:g} ms blocks"
        f"{threads}. {'Ctrl-C to stop' if args.seconds is None else f'{args.seconds:g} s (Ctrl-C to stop early)'}",
        file=sys.stderr,
    )
    before = torch.get_num_threads()
    if on_cpu:
        torch.set_num_threads(n_threads)
    try:
        summary = run_live(
            engine,
            out_dir=out_dir,
            seconds=args.seconds,
            play=args.play,
            block=max(1, int(round(args.block_ms * rate / 1000))),
            device_index=args.device_index,
            device_rate=args.sample_rate,
            verbose=args.verbose,
        )
    finally:
        torch.set_num_threads(before)
    seconds = summary["seconds"]
    print(
        f"Separated {seconds:.1f} s live into {model.n_sources} voices, real-time factor {summary['rtf']:.2f}"
        f"{' (' + summary['stopped'] + ')' if summary['stopped'] else ''}"
    )
    files = list(summary["files"])
    if files:
        facts = {
            "model": model_path,
            "model type": model.model_name,
            "latency": f"{1000 * engine.latency / rate:.0f} ms + {args.block_ms:g} ms blocks",
            "real-time factor": f"{summary['rtf']:.2f}",
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        if summary["stopped"]:
            facts["stopped"] = summary["stopped"]
        page, drawn = report.recording_report(
            out_dir, files, title="Live recording", facts=facts, draw=not args.no_plot
        )
        files += [path.with_suffix(".png") for path in summary["files"] if drawn] + [page]
    for path in files:
        print(f"  {path}")
    return 0


def run_live(
    engine: StreamingSeparator | ChunkedStream,
    *,
    out_dir: Path,
    seconds: float | None,
    play: int | None,
    block: int,
    device_index: int | None = None,
    device_rate: int | None = None,
    verbose: bool = False,
    status=sys.stderr,
) -> dict:
    """Capture, separate, write and play until ``seconds`` of audio, Ctrl-C or SIGTERM.

    The device records at ``device_rate`` (default: the model's rate), or, if it cannot, at its own
    default rate; at a rate other than the model's, the capture is resampled to the model's block by
    block (:class:`~dnnsep.audio.StreamResampler`) and the estimates back to the device's, at which
    every file is written and the chosen voice played (said on ``status``).

    Returns ``{"samples": captured samples separated, "seconds": ..., "rate": the files' rate, "rtf": ...,
    "stopped": why or "", "files": [...]}``.
    """
    from .capture import _quiet_stderr, choose_device, open_input, open_portaudio

    model_rate = engine.sample_rate
    pyaudio, pa = open_portaudio(verbose=verbose)
    stop = threading.Event()
    handlers = {}
    capture = player = writer = None
    try:
        info = choose_device(pa, device_index)
        index, name = int(info["index"]), info["name"]
        rate = _recording_rate(pa, pyaudio, info, device_rate or model_rate, verbose=verbose)
        resampling = rate != model_rate
        if resampling:
            print(
                f"note: input device {index} ({name}) records at {rate} Hz: resampled to the model's "
                f"{model_rate} Hz, the voices back to {rate} Hz (written and played at {rate} Hz)",
                file=status,
            )
            block = max(1, round(block * rate / model_rate))
            to_model = StreamResampler(rate, model_rate)
            to_device = [StreamResampler(model_rate, rate) for _ in range(engine.n_sources)]

        def separate(pcm: np.ndarray | None) -> np.ndarray:
            """A block of the device's samples (None: the end) -> the voices due, at the device's rate."""
            if not resampling:
                return engine.flush() if pcm is None else engine.push(pcm)
            if pcm is None:
                out = np.concatenate([engine.push(to_model.flush()), engine.flush()], axis=1)
                return np.stack([np.concatenate([r.push(o), r.flush()]) for r, o in zip(to_device, out)])
            out = engine.push(to_model.push(pcm.astype(np.float32) / 32768.0))
            return np.stack([r.push(o) for r, o in zip(to_device, out)])

        captured: queue.Queue[bytes | None] = queue.Queue()  # unbounded: the callback never waits, never drops
        limit = None if seconds is None else int(round(seconds * rate))
        counts = {"captured": 0, "overflows": 0}

        def on_input(data, frames, time_info, flags):
            if flags & pyaudio.paInputOverflow:
                counts["overflows"] += 1  # the device dropped samples before we saw them
            if limit is not None:
                data = data[: 2 * max(0, limit - counts["captured"])]
            counts["captured"] += len(data) // 2
            captured.put(data)
            if stop.is_set() or (limit is not None and counts["captured"] >= limit):
                captured.put(None)
                return None, pyaudio.paComplete
            return None, pyaudio.paContinue

        writer = LiveWavs(out_dir, engine.n_sources, rate)
        if play is not None:
            player = _open_output(pa, pyaudio, rate, block, verbose=verbose, quiet=_quiet_stderr)
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, _stop_handler(stop))
        capture = open_input(pa, pyaudio, index, name, rate, block, verbose=verbose, callback=on_input)

        meter = StatusLine(status, engine.n_sources, rate)
        compute, processed, stopped = 0.0, 0, ""
        while True:
            if stop.is_set():
                stopped = "stopped by a signal; audio not yet separated was left out"
                break
            try:
                data = captured.get(timeout=0.1)
            except queue.Empty:
                if not capture.is_active() and captured.empty():
                    stopped = "the input device stopped"
                    break
                continue
            if data is None:
                break
            pcm = np.frombuffer(data, "<i2")
            start = time.perf_counter()
            out = separate(pcm)  # (n_sources, samples due)
            compute += time.perf_counter() - start
            processed += len(pcm)
            _write(writer, player, play, pcm, out)
            meter.update(out, seconds=processed / rate, rtf=compute / max(processed / rate, 1e-9),
                         backlog=captured.qsize() * block / rate)  # fmt: skip
        capture.stop_stream()
        _write(writer, player, play, None, separate(None))
        meter.done()
        if counts["overflows"]:
            print(f"warning: the input device dropped samples {counts['overflows']} times", file=status)
        files = writer.close()
        writer = None
        return {"samples": processed, "seconds": processed / rate, "rate": rate,
                "rtf": compute / max(processed / rate, 1e-9), "stopped": stopped, "files": files}  # fmt: skip
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if writer is not None:
            writer.close()  # interrupted twice or failed: still complete, valid files
        with _quiet_stderr(not verbose):
            for stream in (capture, player):
                if stream is not None:
                    stream.close()
            pa.terminate()


def _recording_rate(pa, pyaudio, info: dict, wanted: int, *, verbose: bool) -> int:
    """``wanted`` if the device records 16-bit mono at it, else the device's own default rate; one line if neither."""
    from .capture import _supports

    index, name = int(info["index"]), info["name"]
    if _supports(pa, pyaudio, index, wanted, verbose=verbose):
        return wanted
    own = int(float(info.get("defaultSampleRate") or 0))
    if own >= 1000 and own != wanted and _supports(pa, pyaudio, index, own, verbose=verbose):
        return own
    raise DnnsepError(f"input device {index} ({name}) cannot record 16-bit mono at {wanted} Hz, nor at its own rate")


def _stop_handler(stop: threading.Event):
    """First Ctrl-C / SIGTERM: stop at the next block, cleanly; a second Ctrl-C: KeyboardInterrupt."""

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    return handler


def _open_output(pa, pyaudio, rate: int, block: int, *, verbose: bool, quiet):
    try:
        with quiet(not verbose):
            return pa.open(format=pyaudio.paInt16, channels=1, rate=rate, output=True, frames_per_buffer=block)
    except (OSError, ValueError) as err:
        raise DnnsepError(f"--play: could not open the default output device: {err}") from None


def _write(writer: LiveWavs, player, play: int | None, pcm: np.ndarray | None, out: np.ndarray) -> None:
    estimates = to_pcm16(out)  # (n_sources, samples)
    writer.write(pcm, estimates)
    if player is not None and estimates.shape[1]:
        player.write(estimates[play].tobytes())


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1) to int16, rounded, clipped at full scale (as the demo's WAV files)."""
    return np.clip(np.round(x * np.float32(32768)), -32768, 32767).astype(np.int16)


class LiveWavs:
    """``mixture.wav`` and ``estimated-<k>.wav`` (16-bit PCM) written block by block.

    Written as hidden temporary files beside their final names and renamed into place by
    :meth:`close`, so a final name always holds a complete file, this run's once it has ended.
    """

    def __init__(self, out_dir: Path, n_sources: int, rate: int):
        out_dir.mkdir(parents=True, exist_ok=True)
        names = ["mixture.wav"] + [f"estimated-{k}.wav" for k in range(n_sources)]
        self.paths = [out_dir / name for name in names]
        self.tmps = [out_dir / f".{name}.{secrets.token_hex(4)}.part" for name in names]
        self.files = []
        try:
            for tmp in self.tmps:
                self.files.append(sf.SoundFile(tmp, "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV"))
        except BaseException:
            self.close(keep=False)
            raise

    def write(self, mixture: np.ndarray | None, estimates: np.ndarray) -> None:
        """Shape: mixture (samples,) int16 or None, estimates (n_sources, samples) int16."""
        if mixture is not None:
            self.files[0].write(mixture)
        for f, est in zip(self.files[1:], estimates):
            f.write(est)

    def close(self, *, keep: bool = True) -> list[Path]:
        """Close every file (libsndfile completes the headers) and rename it into place; returns the paths."""
        for f in self.files:
            f.close()
        self.files = []
        if not keep:
            for tmp in self.tmps:
                tmp.unlink(missing_ok=True)
            return []
        for tmp, path in zip(self.tmps, self.paths):
            if tmp.exists():
                os.replace(tmp, path)
        for stale in self.paths[0].parent.glob("estimated-*.wav"):  # from an earlier model with more voices
            if stale not in self.paths:
                stale.unlink()
        return self.paths


class StatusLine:
    """Elapsed time, a level meter per voice, the real-time factor, and a warning when behind.

    On a terminal one line redrawn 4 times a second; otherwise (a log) one line a second.
    """

    def __init__(self, stream, n_sources: int, rate: int):
        self.stream, self.rate = stream, rate
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.every = 0.25 if self.tty else 1.0
        self.last = -math.inf
        self.energy = np.zeros(n_sources)  # since the last line
        self.count = 0
        self.behind = False  # the backlog was over 0.25 s at the last update

    def update(self, out: np.ndarray, *, seconds: float, rtf: float, backlog: float) -> None:
        self.energy += np.square(out, dtype=np.float64).sum(axis=1)
        self.count += out.shape[1]
        now = time.monotonic()
        behind = backlog > 0.25
        newly_behind, self.behind = behind and not self.behind, behind  # say so at once, not at the next line
        if now - self.last < self.every and not newly_behind:
            return
        self.last = now
        rms = np.sqrt(self.energy / max(self.count, 1))
        self.energy[:], self.count = 0, 0
        meters = " | ".join(f"voice {k} {_meter(level)}" for k, level in enumerate(rms))
        line = f"live {seconds:6.1f} s | {meters} | RTF {rtf:.2f}"
        if behind:
            line += f" | warning: behind, backlog {backlog:.1f} s"
        self.stream.write(f"\r{line}\x1b[K" if self.tty else f"{line}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self.last > -math.inf:
            self.stream.write("\n")
            self.stream.flush()


def _meter(rms: float, width: int = 10) -> str:
    """``[#####.....] -30 dB``: the level in dB below full scale, one mark per 6 dB.

    >>> _meter(0.5), _meter(0.0)
    ('[#########.]   -6 dB', '[..........] -inf dB')
    """
    db = 20 * math.log10(rms) if rms > 0 else -math.inf
    marks = 0 if db == -math.inf else max(0, min(width, round(width * (db + METER_DB) / METER_DB)))
    text = f"{db:.0f}" if db > -math.inf else "-inf"
    return f"[{'#' * marks}{'.' * (width - marks)}] {text:>4} dB"
