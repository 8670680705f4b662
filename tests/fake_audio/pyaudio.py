"""A stand-in for PyAudio where ALSA's file plugin is not there to test real capture (macOS), or where
``DNNSEP_FAKE_PYAUDIO=1`` asks for it (CI runs the capture tests both ways on Linux).

The tests put this folder first on the child's PYTHONPATH.  Like ALSA's ``file`` PCM as the tests set it
up: one default device that captures the raw int16 samples of ``DNNSEP_FAKE_AUDIO_IN`` (unpaced: reads
return at once; past the end, silence) and appends what it plays to ``DNNSEP_FAKE_AUDIO_OUT``; no
``DNNSEP_FAKE_AUDIO_IN``: no device at all.  ``DNNSEP_FAKE_AUDIO_RATE=HZ``: a device that records at that
rate only (its default rate); otherwise any rate, 16 kHz by default.  Only what dnnsep calls is here.
"""

from __future__ import annotations

import os
import threading

paInt16 = 8
paContinue, paComplete, paAbort = 0, 1, 2
paInputOverflow = 2


class PyAudio:
    def __init__(self):
        self._in = os.environ.get("DNNSEP_FAKE_AUDIO_IN") or None
        self._out = os.environ.get("DNNSEP_FAKE_AUDIO_OUT") or os.devnull
        self._rate = int(os.environ.get("DNNSEP_FAKE_AUDIO_RATE") or 0) or None  # None: any rate

    def _info(self) -> dict:
        return {"index": 0, "name": "default (a fake microphone: dnnsep tests)", "maxInputChannels": 1,
                "maxOutputChannels": 1, "defaultSampleRate": float(self._rate or 16000)}  # fmt: skip

    def get_device_count(self) -> int:
        return 1 if self._in else 0

    def get_device_info_by_index(self, index: int) -> dict:
        if not self._in or index != 0:
            raise OSError(-9996, "Invalid device")
        return self._info()

    def get_default_input_device_info(self) -> dict:
        if not self._in:
            raise OSError(-9996, "No Default Input Device Available")
        return self._info()

    def is_format_supported(self, rate, input_device=None, input_channels=None, input_format=None, **_):
        if input_device is not None and (not self._in or input_device != 0):
            raise ValueError("Invalid device")
        if self._rate is not None and int(rate) != self._rate:
            raise ValueError("Invalid sample rate")  # as PyAudio says it
        return input_format in (None, paInt16)

    def open(self, *, format, channels, rate, input=False, output=False, input_device_index=None,
             frames_per_buffer=1024, stream_callback=None, **_):  # fmt: skip
        if format != paInt16 or channels != 1:
            raise ValueError("Invalid sample format")
        if input and not self._in:
            raise OSError(-9996, "Invalid input device")
        return Stream(self._in if input else None, self._out if output else None, frames_per_buffer, stream_callback)

    def terminate(self) -> None:
        pass


class Stream:
    def __init__(self, source: str | None, sink: str | None, block: int, callback):
        self._source = open(source, "rb") if source else None
        self._sink = open(sink, "ab") if sink else None
        self._block, self._callback = block, callback
        self._active = True
        self._thread = None
        if callback is not None:
            self._thread = threading.Thread(target=self._feed, daemon=True)
            self._thread.start()

    def _frames(self, n: int) -> bytes:
        data = self._source.read(2 * n)
        return data + b"\0" * (2 * n - len(data))  # past the end: silence

    def _feed(self) -> None:  # PortAudio's callback thread, unpaced like the file plugin
        while self._active:
            _, flag = self._callback(self._frames(self._block), self._block, {}, 0)
            if flag != paContinue:
                break
        self._active = False

    def read(self, n: int, exception_on_overflow: bool = True) -> bytes:
        return self._frames(n)

    def write(self, data: bytes) -> None:
        self._sink.write(data)
        self._sink.flush()

    def is_active(self) -> bool:
        return self._active

    def stop_stream(self) -> None:
        self._active = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def close(self) -> None:
        self.stop_stream()
        for f in (self._source, self._sink):
            if f is not None:
                f.close()
