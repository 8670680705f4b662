"""Report pages: evaluate's, separate's and the demo's ``report.html``, checked in headless Chromium (audio that
decodes, a table that sorts, a screenshot that is not blank), escaped names, and the page without matplotlib."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import alsa_config, audio_env, chromium_binary
from corpus import SEGMENT, tiny_corpus

from dnnsep import DPRNNConfig, DPRNNTasNet, report
from dnnsep.bin import evaluate, prepare, separate

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
TINY = dict(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1)
EVIL = "<script>alert(1)</script>"  # as a file name: the file script>.wav in the folder <script>alert(1)<


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory):
    return tiny_corpus(tmp_path_factory)


@pytest.fixture(scope="module")
def model_path(corpus_root, tmp_path_factory):
    """A tiny model whose checkpoint names a prepared tiny dataset with 5 full-length test mixtures."""
    base = tmp_path_factory.mktemp("report")
    argv = [str(base / "data"), "2", "--librispeech_root", str(corpus_root), "--no_progress", *SEGMENT]
    assert prepare.main([*argv, "--eval_segment", "full", "--n_test", "5"]) == 0
    torch.manual_seed(0)
    path = base / "exp" / "model" / "best.pth"
    path.parent.mkdir(parents=True)
    model = DPRNNTasNet(DPRNNConfig(**TINY)).eval()
    torch.save({**model.checkpoint(), "train_config": {"dataset_dir": str(base / "data")}}, path)
    return path


@pytest.fixture(scope="module")
def evaluated(model_path):
    """The evaluation folder: 5 mixtures, the 2 worst and 2 best with players, the first 2 also examples."""
    assert evaluate.main([str(model_path), "--device", "cpu", "--n_examples", "2", "--report_rows", "2"]) == 0
    return model_path.parent.parent / "eval" / "test-best"


def results(folder: Path) -> list[dict]:
    with open(folder / "results.csv") as f:
        return list(csv.DictReader(f))


def table_ids(page: str) -> list[str]:
    """The mixture ids of the table, in the page's order."""
    return [html.unescape(m) for m in re.findall(r"<tbody><tr><td>(.*?)</td>", page)]


def linked(page: str, folder: Path, tag: str) -> list[Path]:
    """The files that the page's ``tag`` elements (audio, img) link to."""
    return [
        folder / urllib.parse.unquote(html.unescape(src)) for src in re.findall(rf'<{tag}[^>]* src="([^"]*)"', page)
    ]


# -- evaluate's page ---------------------------------------------------------------------------------


def test_evaluate_writes_a_report_beside_its_csv(evaluated):
    page = (evaluated / "report.html").read_text()
    rows = results(evaluated)
    worst_first = [r["id"] for r in sorted(rows, key=lambda r: float(r["si_sdri"]))]
    assert table_ids(page) == worst_first
    for what in ("SI-SDRi", "SDRi", "PESQ", "STOI", "median", "DPRNNTasNet", "n_filters = 8", "test.json"):
        assert what in page, what
    # the mean and the median SI-SDRi, as in the CSV
    values = np.array([float(r["si_sdri"]) for r in rows])
    found = re.search(r"<td>SI-SDRi \(dB\)</td><td class=n>(\S+)</td><td class=n>(\S+)</td>", page)
    assert found and [float(v) for v in found.groups()] == pytest.approx([values.mean(), np.median(values)], abs=0.006)
    audio = linked(page, evaluated, "audio")
    assert len(audio) == 4 * 5 and all(p.is_file() for p in audio)  # 4 rows: mixture, 2 references, 2 estimates
    examples = {p.parent.name for p in audio if p.parent.parent.name == "examples"}
    written = {p.parent.name for p in audio if p.parent.parent.name == "report"}
    assert examples and written and not examples & written  # the examples' WAVs reused, the others written
    assert examples <= {r["id"] for r in rows[:2]} and len(examples | written) == 4
    images = linked(page, evaluated, "img")
    assert len(images) == 3 + 4 * 5 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in images)
    assert not list(evaluated.rglob("*.tmp"))


def test_report_rows_zero_has_no_players_and_removes_an_earlier_runs(model_path, tmp_path):
    out = tmp_path / "eval"
    argv = [str(model_path), "--device", "cpu", "--n_examples", "0", "--out_dir", str(out)]
    assert evaluate.main([*argv, "--report_rows", "1"]) == 0
    assert len(list((out / "report").glob("*/mixture.wav"))) == 2
    (out / "report" / "keep.txt").write_text("not ours")
    assert evaluate.main([*argv, "--report_rows", "0"]) == 0
    page = (out / "report.html").read_text()
    assert "<audio" not in page and len(table_ids(page)) == 5
    assert sorted(p.name for p in (out / "report").iterdir()) == [
        "keep.txt",
        "si_sdri_histogram.png",
        "si_sdri_vs_input_si_sdr.png",
        "si_sdri_vs_level_difference.png",
    ]


# -- the browser -------------------------------------------------------------------------------------

CHECK_JS = """
(function () {
  var out = {audio: [], errors: []};
  document.addEventListener("securitypolicyviolation", function (e) { out.errors.push(e.violatedDirective); });
  function ids() {
    return Array.prototype.map.call(document.querySelectorAll("#mixtures tbody"), function (b) {
      return b.rows[0].cells[0].textContent; });
  }
  function finish() {
    var table = document.getElementById("mixtures");
    if (table) {
      out.initial = ids();
      var th = Array.prototype.filter.call(table.tHead.rows[0].cells, function (h) {
        return h.textContent === COLUMN; })[0];
      th.dispatchEvent(new MouseEvent("click", {bubbles: true}));
      out.up = ids();
      th.dispatchEvent(new MouseEvent("click", {bubbles: true}));
      out.down = ids();
    }
    out.width = [document.documentElement.scrollWidth, window.innerWidth];
    out.scripts = document.querySelectorAll("script").length;
    out.text = document.body.textContent;
    var pre = document.createElement("pre");
    pre.id = "check";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  var audios = Array.prototype.slice.call(document.querySelectorAll("audio")), pending = audios.length;
  audios.forEach(function (a) {
    var settled = false;
    function done(ok) {
      if (settled) { return; }
      settled = true;
      out.audio.push({src: a.getAttribute("src"), duration: ok ? a.duration : null, error: a.error && a.error.code});
      if (--pending === 0) { finish(); }
    }
    a.addEventListener("loadedmetadata", function () { done(true); });
    a.addEventListener("error", function () { done(false); });
    if (a.readyState >= 1) { done(true); }
  });
  if (!pending) { finish(); }
})();
"""


def chromium() -> str:
    found = chromium_binary()
    if not found:
        pytest.fail("no chromium: apt-get install chromium (Debian) / brew install --cask chromium (macOS)")
    return found


def browse(page: Path, tmp_path: Path, *args: str) -> str:
    """Run headless Chromium on ``page`` (from file://) with ``args``; returns its stdout."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
           f"--user-data-dir={tmp_path / 'profile'}", *args, page.resolve().as_uri()]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def check_in_browser(page: Path, tmp_path: Path, column: str = "") -> dict:
    """Open a copy of ``page`` with :data:`CHECK_JS` appended (and allowed by the page's CSP, by its hash) on a
    narrow screen; returns what the script recorded once every audio element had loaded its metadata, having
    clicked the header of the table's ``column`` twice."""
    text = page.read_text()
    check = CHECK_JS.replace("COLUMN", json.dumps(column))
    digest = base64.b64encode(hashlib.sha256(check.encode()).digest()).decode()
    assert "script-src 'sha256-" in text  # the page's own script is allowed by its hash, no other
    text = text.replace("script-src ", f"script-src 'sha256-{digest}' ", 1)
    copy = page.with_name("check.html")
    copy.write_text(text.replace("</body>", f"<script>{check}</script>\n</body>"))
    try:
        dom = browse(copy, tmp_path, "--virtual-time-budget=10000", "--window-size=500,900", "--dump-dom")
    finally:
        copy.unlink()
    found = re.search(r'<pre id="check">(.*?)</pre>', dom, re.S)
    assert found, f"the check script did not finish: {dom[-1000:]}"
    return json.loads(html.unescape(found.group(1)))


def check_audio(seen: dict, page: Path) -> None:
    """Every player's file exists and decodes in the browser, as long as the file."""
    assert seen["audio"] and seen["errors"] == []
    for audio in seen["audio"]:
        path = page.parent / urllib.parse.unquote(audio["src"])
        assert audio["error"] is None and path.is_file(), audio
        assert audio["duration"] == pytest.approx(sf.info(str(path)).duration, abs=1e-3), audio


def not_blank(page: Path, tmp_path: Path) -> int:
    """The number of colours of a desktop-sized screenshot of ``page``."""
    from PIL import Image

    shot = tmp_path / "shot.png"
    browse(page, tmp_path, "--window-size=1280,1600", "--hide-scrollbars", f"--screenshot={shot}")
    with Image.open(shot) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 24) or [])


@pytest.mark.slow
def test_pages_in_a_real_browser(evaluated, model_path, tmp_path):
    page = evaluated / "report.html"
    rows = {r["id"]: r for r in results(evaluated)}
    initial = sorted(rows, key=lambda i: float(rows[i]["si_sdri"]))  # worst first
    by = {key: sorted(rows, key=lambda i: float(rows[i][key])) for key in ("sdr", "stoi", "pesq", "si_sdr")}
    key = next(key for key, order in by.items() if order != initial)  # a column that reorders the table
    seen = check_in_browser(page, tmp_path, {"sdr": "SDR", "stoi": "STOI", "pesq": "PESQ", "si_sdr": "SI-SDR"}[key])
    check_audio(seen, page)
    assert len(seen["audio"]) == 4 * 5
    assert seen["initial"] == initial
    assert seen["up"] == by[key]  # its header clicked: sorted by it
    assert seen["down"] == by[key][::-1]  # clicked again: the other way
    assert seen["scripts"] == 2  # the page's and the check's
    assert seen["width"][0] <= seen["width"][1]  # nothing wider than a phone's screen but the scrolling table
    assert not_blank(page, tmp_path) > 1

    # separate's page, for an input whose name is markup: shown as text, its files found
    (tmp_path / "in" / EVIL).parent.mkdir(parents=True)
    sf.write(tmp_path / "in" / f"{EVIL}.wav", speech_like(1.3), RATE)
    assert separate.main([str(tmp_path / "in"), "--model", str(model_path), "--out_dir", str(tmp_path / "out")]) == 0
    page = tmp_path / "out" / "report.html"
    seen = check_in_browser(page, tmp_path)
    check_audio(seen, page)
    assert len(seen["audio"]) == 3 and seen["scripts"] == 2 and EVIL in seen["text"]
    assert seen["width"][0] <= seen["width"][1]
    assert not_blank(page, tmp_path) > 1


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    x = np.sin(2 * np.pi * 150 * t) * (1 + np.sin(3 * t)) + 0.5 * np.sign(np.sin(2 * np.pi * 410 * t))
    return (0.3 * x / np.abs(x).max() + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


# -- escaping ----------------------------------------------------------------------------------------


def assert_escaped(page: str) -> None:
    assert EVIL not in page and "<img src=x" not in page and "</style><" not in page
    assert page.count("<script") == 1  # the page's own, nothing injected
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_every_name_shown_is_escaped(tmp_path):
    evil_config = {"norm": EVIL, EVIL: "</style><img src=x onerror=alert(1)>"}
    wav = tmp_path / "in" / f"{EVIL}.wav"
    wav.parent.mkdir(parents=True)
    sf.write(wav, speech_like(0.5), RATE)
    clip = report.Clip(f"{EVIL} voice", wav, tmp_path / "in" / f"{EVIL}.png", speech_like(0.5))
    rows = [
        {"id": EVIL, "speakers": "<img src=x onerror=alert(1)>", "seconds": 1.0, "si_sdr": 1.0, "si_sdri": 2.0},
        {"id": "b", "speakers": "1 + 2", "seconds": 1.0, "si_sdr": 0.0, "si_sdri": float("nan")},
    ]
    facts = {"model": tmp_path / f"{EVIL}.pth", "model config": evil_config, EVIL: EVIL}
    page = report.write_eval_report(
        tmp_path, rows, names=("si_sdr", "si_sdri"), facts=facts, chosen={0: [clip]}, sample_rate=RATE, title=EVIL
    )
    text = page.read_text()
    assert_escaped(text)
    assert table_ids(text) == [EVIL, "b"]  # worst first, NaN last
    assert linked(text, tmp_path, "audio") == [wav]  # the link percent-encoded, and found
    assert clip.png in linked(text, tmp_path, "img") and clip.png.is_file()
    item = report.Item(EVIL, {"input": wav, EVIL: EVIL}, [clip])
    page = report.write_listen_report(tmp_path, [item], title=EVIL, facts=facts, failed={str(wav): EVIL})
    assert_escaped(page.read_text())


def test_separate_shows_a_name_of_markup_as_text(model_path, tmp_path):
    (tmp_path / "in" / EVIL).parent.mkdir(parents=True)
    sf.write(tmp_path / "in" / f"{EVIL}.wav", speech_like(1.0), RATE)
    sf.write(tmp_path / "in" / "bad.wav", np.zeros(10, np.float32), RATE)  # too short: listed as failed
    out = tmp_path / "out"
    assert separate.main([str(tmp_path / "in"), "--model", str(model_path), "--out_dir", str(out)]) == 1
    text = (out / "report.html").read_text()
    assert_escaped(text)
    assert "Failed (1)" in text and "bad.wav" in text
    audio = linked(text, out, "audio")
    assert [p.relative_to(out).as_posix() for p in audio] == [
        f"{EVIL}/mixture.wav",
        f"{EVIL}/estimated-0.wav",
        f"{EVIL}/estimated-1.wav",
    ]
    assert all(p.is_file() for p in audio + linked(text, out, "img"))
    assert sf.info(str(audio[0])).frames == RATE  # the input as the model heard it
    # a rerun that skips it still lists it; --no_report writes no page and no copy of the input
    (tmp_path / "in" / "bad.wav").unlink()
    argv = [str(tmp_path / "in"), "--model", str(model_path)]
    assert separate.main([*argv, "--out_dir", str(out), "--skip_existing"]) == 0
    text = (out / "report.html").read_text()
    assert linked(text, out, "audio") == audio and "by an earlier run" in text and "Failed" not in text
    assert separate.main([*argv, "--out_dir", str(tmp_path / "o"), "--no_report"]) == 0
    written = sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*") if p.is_file())
    assert written == [f"{EVIL}/estimated-0.wav", f"{EVIL}/estimated-1.wav"]


# -- without matplotlib ------------------------------------------------------------------------------


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Imports of matplotlib (and Pillow) fail, as if they were not installed."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("matplotlib", "PIL")] + ["matplotlib", "PIL"]:
        monkeypatch.setitem(sys.modules, name, None)


def test_without_matplotlib_the_page_says_how_to_get_plots(model_path, tmp_path, no_matplotlib):
    out = tmp_path / "eval"
    argv = [str(model_path), "--device", "cpu", "--out_dir", str(out), "--report_rows", "1"]
    assert evaluate.main(argv) == 0
    text = (out / "report.html").read_text()
    assert "matplotlib is not installed" in text and "pip install 'dnnsep[plot]'" in html.unescape(text)
    assert "<img" not in text and len(linked(text, out, "audio")) == 2 * 5
    assert not list(out.rglob("*.png"))
    sf.write(tmp_path / "a.wav", speech_like(1.0), RATE)
    argv = [str(tmp_path / "a.wav"), "--model", str(model_path), "--out_dir", str(tmp_path / "sep")]
    assert separate.main(argv) == 0
    text = (tmp_path / "sep" / "report.html").read_text()
    assert "pip install 'dnnsep[plot]'" in html.unescape(text) and "<img" not in text
    assert len(linked(text, tmp_path / "sep", "audio")) == 3 and not list((tmp_path / "sep").rglob("*.png"))


# -- the strips, the choice of rows ------------------------------------------------------------------


def test_strips_share_one_scale_and_are_small(tmp_path):
    from PIL import Image

    loud = speech_like(10.0)
    clips = [report.Clip("loud", tmp_path / "a.wav", tmp_path / "a.png", loud),
             report.Clip("quiet", tmp_path / "b.wav", tmp_path / "b.png", 0.01 * loud)]  # fmt: skip
    assert report.draw_strips(clips, RATE)
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert a.size == b.size == (report.STRIP_WIDTH, report.STRIP_HEIGHT) and a.mode == "P"
        assert np.mean(np.asarray(a)) > np.mean(np.asarray(b)) + 50  # 40 dB quieter: darker on one scale
    assert (tmp_path / "a.png").stat().st_size < 40_000


def test_extremes_keep_the_worst_and_best():
    keys = np.random.default_rng(0).standard_normal(1000)
    keeper = report.Extremes(10)
    for i, key in enumerate(keys):
        keeper.offer(float(key), i, i)
    order = np.argsort(keys)
    assert set(keeper.chosen()) == set(order[:10]) | set(order[-10:])
    small = report.Extremes(10)
    for i in range(5):
        small.offer(float(i), i, i)
    assert list(small.chosen()) == [0, 1, 2, 3, 4]  # fewer rows than 2 N: each once


# -- the demo and live -------------------------------------------------------------------------------


def test_demo_writes_a_report_for_its_recording(model_path, tmp_path):
    t = np.arange(3 * RATE) / RATE
    pcm = np.round(9000 * (np.sin(2 * np.pi * 150 * t) + 0.5 * np.sign(np.sin(2 * np.pi * 410 * t)))).astype(np.int16)
    conf = alsa_config(tmp_path, pcm)
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "dnnsep.bin.demo", "--model", str(model_path), "--duration", "1"]
    env = {**os.environ, **audio_env(conf)}
    done = subprocess.run([*cmd, "--out_dir", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(out / "report.html") in done.stdout
    text = (out / "report.html").read_text()
    names = [p.name for p in linked(text, out, "audio")]
    assert names == ["mixture.wav", "estimated-0.wav", "estimated-1.wav"]
    assert [p.name for p in linked(text, out, "img")] == ["mixture.png", "estimated-0.png", "estimated-1.png"]
    assert "separated in" in text and "DPRNNTasNet" in text


@pytest.mark.slow
def test_live_writes_a_report_for_its_recording(tmp_path):
    t = np.arange(3 * RATE) / RATE
    pcm = np.round(9000 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(3 * t))).astype(np.int16)
    conf = alsa_config(tmp_path, pcm)
    torch.manual_seed(0)
    DPRNNTasNet(DPRNNConfig(causal=True, **TINY)).save(tmp_path / "causal.pth")
    out = tmp_path / "live"
    cmd = [sys.executable, "-m", "dnnsep.bin.demo", "--live", "--device", "cpu", "--seconds", "1", "--no_plot",
           "--model", str(tmp_path / "causal.pth"), "--out_dir", str(out)]  # fmt: skip
    env = {**os.environ, **audio_env(conf)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = (out / "report.html").read_text()
    assert [p.name for p in linked(text, out, "audio")] == ["mixture.wav", "estimated-0.wav", "estimated-1.wav"]
    assert "<img" not in text and "real-time factor" in text  # --no_plot: no strips


# -- the benchmark -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_report_tiny():
    cmd = [sys.executable, str(ROOT / "bench" / "bench_report.py"), "--tiny"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "cpu:" in done.stdout and "report for" in done.stdout
