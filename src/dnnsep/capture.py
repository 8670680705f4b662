"""Microphone capture through PyAudio: devices, a recording of N seconds, levels.

Used by the offline demo (:mod:`dnnsep.bin.demo`) and the live one (:mod:`dnnsep.live`).  PyAudio (the
``[demo]`` extra, built against PortAudio) is imported only when a device is opened.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from .errors import DnnsepError

MIC_HELP = (
    "on macOS, allow microphone access for your terminal app in System Settings > Privacy & Security > Microphone"
)


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
        stream = open_input(pa, pyaudio, index, name, rate, block, verbose=verbose)
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


def open_input(pa, pyaudio, index: int, name: str, rate: int, block: int, *, verbose: bool = False, callback=None):
    """A 16-bit mono input stream of device ``index`` read ``block`` frames at a time (or fed to ``callback``);
    a device that refuses is one line naming it and the microphone permission."""
    try:
        with _quiet_stderr(not verbose):
            return pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=rate,
                input=True,
                input_device_index=index,
                frames_per_buffer=block,
                stream_callback=callback,
            )
    except (OSError, ValueError) as err:
        raise DnnsepError(f"could not open input device {index} ({name}): {err}; {MIC_HELP}") from None


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
