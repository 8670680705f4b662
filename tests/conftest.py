"""What many test files share: tiny configs of every registered model, and a float64 SI-SDR."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

# Tiny options of each registered model (a test asserts every registered model has an entry).
TINY_MODELS = {
    "dprnn_tasnet": dict(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1),
    "conv_tasnet": dict(
        n_filters=8, kernel_size=4, bottleneck=8, hidden=16, conv_kernel=3, n_layers=2, n_repeats=1, skip_channels=8
    ),
    "sepformer": dict(
        n_filters=8,
        kernel_size=4,
        chunk_size=10,
        hop_size=5,
        n_blocks=1,
        intra_layers=1,
        inter_layers=1,
        heads=2,
        ffn=16,
    ),
}

# For each model, another valid value of every option (a test asserts each changes the network and the
# experiment directory).  n_sources and sample_rate are the data's, set at the top level of a config.
OTHER_VALUES = {
    "dprnn_tasnet": dict(
        n_filters=12,
        kernel_size=8,
        stride=1,
        bottleneck=6,
        hidden=12,
        chunk_size=20,
        hop_size=10,
        n_blocks=2,
        mask="relu",
        norm="cln",
        causal=True,
        encoder_activation="linear",
        signal_padding="none",
        chunk_padding="chunk",
        head="gated",
    ),  # fmt: skip
    "conv_tasnet": dict(
        n_filters=12,
        kernel_size=8,
        stride=1,
        bottleneck=6,
        hidden=12,
        conv_kernel=5,
        n_layers=3,
        n_repeats=2,
        skip_channels=6,
        mask="relu",
        norm="cln",
        causal=True,
        encoder_activation="linear",
        signal_padding="none",
    ),  # fmt: skip
    "sepformer": dict(
        n_filters=12,
        kernel_size=8,
        stride=1,
        bottleneck=6,
        chunk_size=20,
        hop_size=10,
        n_blocks=2,
        intra_layers=2,
        inter_layers=2,
        heads=4,
        ffn=12,
        dropout=0.25,
        mask="sigmoid",
        norm="cln",
        encoder_activation="linear",
        signal_padding="none",
        chunk_padding="speechbrain",
        head="linear",
    ),  # fmt: skip
}


FAKE_AUDIO = Path(__file__).parent / "fake_audio"  # a PyAudio stand-in (see its doc)


def chromium_binary() -> str | None:
    """Chromium for the report page's browser test: Debian's ``chromium``, Ubuntu's ``chromium-browser``, or
    the macOS app (``brew install --cask chromium``)."""
    app = Path("/Applications/Chromium.app/Contents/MacOS/Chromium")
    return shutil.which("chromium") or shutil.which("chromium-browser") or (str(app) if app.exists() else None)


def fake_pyaudio() -> bool:
    """Whether the capture tests run through tests/fake_audio's PyAudio: on macOS (no ALSA file plugin
    there), or where ``DNNSEP_FAKE_PYAUDIO=1`` asks (CI runs them both ways on Linux)."""
    return sys.platform == "darwin" or os.environ.get("DNNSEP_FAKE_PYAUDIO") == "1"


def audio_env(conf: Path) -> dict:
    """Environment variables for a child process whose default audio devices are those of ``conf``
    (made by :func:`alsa_config`): ALSA's file plugin, or the fake PyAudio reading the same files."""
    if not fake_pyaudio():
        return {"ALSA_CONFIG_PATH": str(conf)}
    files = json.loads(conf.with_suffix(".json").read_text())
    path = os.pathsep.join(filter(None, [str(FAKE_AUDIO), os.environ.get("PYTHONPATH", "")]))
    return {"PYTHONPATH": path, "DNNSEP_FAKE_AUDIO_IN": files["in"] or "", "DNNSEP_FAKE_AUDIO_OUT": files["out"] or ""}


def alsa_config(directory: Path, pcm: np.ndarray | None, *, played: Path | None = None) -> Path:
    """An ALSA configuration (for ``ALSA_CONFIG_PATH``) whose default device captures ``pcm`` (int16) from a
    raw file and writes what it plays to ``played`` (or nowhere); ``pcm=None``: no device at all.  Pass it
    to a child through :func:`audio_env`, which also serves the fake PyAudio the same files."""
    conf = directory / "asound.conf"
    text = "</usr/share/alsa/alsa.conf>\n"
    files = {
        "in": None if pcm is None else str(directory / "capture.raw"),
        "out": None if played is None else str(played),
    }
    conf.with_suffix(".json").write_text(json.dumps(files))
    if pcm is not None:
        pcm.astype("<i2").tofile(directory / "capture.raw")
        text += (
            "pcm.!default {\n  type file\n  slave.pcm \"null\"\n"
            f"  file \"{played or '/dev/null'}\"\n  infile \"{directory / 'capture.raw'}\"\n  format \"raw\"\n}}\n"
        )  # fmt: skip
    conf.write_text(text)
    return conf


def reference_si_sdr(estimate: np.ndarray, target: np.ndarray) -> float:
    """SI-SDR in dB, in float64, from its definition (zero-mean signals, scaled target)."""
    estimate = np.asarray(estimate, np.float64) - np.mean(estimate)
    target = np.asarray(target, np.float64) - np.mean(target)
    scaled = np.dot(estimate, target) / np.dot(target, target) * target
    return float(10 * np.log10(np.sum(scaled**2) / np.sum((estimate - scaled) ** 2)))


# -- the tools the suite needs: checked once, up front ------------------------------------------------
# (what, how to tell it is there, the fix).  CI installs them all; a developer without one is told here,
# in one line, before any test runs, rather than by a failure deep inside a test or a silent skip.
def _all_voices(engine: str) -> bool:
    from dnnsep.data import synthesisers

    return len(synthesisers.installed(engine)) == len(synthesisers.ENGINES[engine][2])


NEEDED = (
    ("zsh", lambda: shutil.which("zsh"), "apt-get install zsh / brew install zsh"),
    ("espeak-ng", lambda: shutil.which("espeak-ng"), "apt-get install espeak-ng / brew install espeak-ng"),
    ("flite", lambda: _all_voices("flite"), "apt-get install flite / brew install flite"),
    (
        "festival and 10 of its voices",
        lambda: _all_voices("festival"),
        "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k "
        "festvox-itapc16k festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-dita festvox-czech-machac festvox-ru"
        " / port install festival",
    ),  # the engine the benches hold out of training
    (
        "chromium",
        lambda: chromium_binary(),
        "apt-get install chromium / brew install --cask chromium",
    ),  # the report pages are checked in a real browser
    ("PyAudio (PortAudio)", lambda: _module("pyaudio"), "bash utils/setup.sh test"),
    (
        "onnx, onnxscript, onnxruntime",
        lambda: all(map(_module, ("onnx", "onnxscript", "onnxruntime"))),
        "pip install -e '.[dev]'",
    ),  # noqa: E501
    ("matplotlib", lambda: _module("matplotlib"), "pip install -e '.[dev]'"),
    ("huggingface_hub", lambda: _module("huggingface_hub"), "pip install -e '.[dev]'"),  # hf: references
    ("pyroomacoustics", lambda: _module("pyroomacoustics"), "pip install -e '.[dev]'"),  # simulated rooms
    (
        "fast_bss_eval, pesq, pystoi",
        lambda: all(map(_module, ("fast_bss_eval", "pesq", "pystoi"))),
        "pip install -e '.[dev]'",
    ),
)


def _module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def pytest_sessionstart(session):
    missing = [(what, fix) for what, present, fix in NEEDED if not present()]
    if missing and not os.environ.get("DNNSEP_TESTS_WITHOUT"):
        listed = "; ".join(f"{what} ({fix})" for what, fix in missing)
        pytest.exit(
            f"the tests need: {listed}. `bash utils/run_tests.sh` installs them (as root with apt), "
            "or set DNNSEP_TESTS_WITHOUT=1 to run without them (their tests then fail)",
            returncode=3,
        )


def pytest_sessionfinish(session, exitstatus):
    """In CI nothing may skip itself into green: a skipped test fails the run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) skipped; in CI every test must run", red=True)
        session.exitstatus = 1
