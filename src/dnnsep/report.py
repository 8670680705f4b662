"""Report pages: a ``report.html`` for listening to and looking at what evaluate, separate and the demo wrote.

A page is one self-contained folder: the HTML, small PNGs and links to WAVs by relative path, so it
can be zipped or served as it is, and opened from ``file://``.  No network resource and no framework:
a little inline JavaScript (allowed by the page's Content-Security-Policy through its hash, so no
other script runs) sorts a table when a column's header is clicked.  Plots and spectrogram strips
need matplotlib (the ``[plot]`` extra; the Agg canvas and Pillow, no display); without it the page
is written without them and says how to get them.  Every name shown (file names, ids, speakers,
config values) is HTML-escaped, every link URL-quoted; every file is written atomically.

- :func:`write_eval_report`: evaluate's page: summary, plots, and every mixture in a sortable
  table, worst first, with players and spectrograms for the worst and best rows (:class:`Extremes`).
- :func:`write_listen_report`: separate's and the demo's page: per input, players and spectrograms
  of the input and each estimated voice, the model and the time taken.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import html
import math
import os
import re
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .checkpoint import atomic_write

PAGE = "report.html"
PLOT_HINT = "pip install 'dnnsep[plot]'"
STRIP_HEIGHT = 64  # frequency rows of a spectrogram strip (pairs of STFT bins averaged)
STRIP_WIDTH = 400  # at most this many columns (frames averaged in groups)
DB_RANGE = 80  # a strip's colour scale spans this many dB below the loudest bin of its group
PRELOAD_LIMIT = 200  # pages with more players than this fetch nothing before play (preload="none")
LABELS = {"si_sdr": "SI-SDR", "si_sdri": "SI-SDRi", "sdr": "SDR", "sdri": "SDRi", "pesq": "PESQ", "stoi": "STOI",
          "input_si_sdr": "input SI-SDR", "level_diff": "level difference"}  # fmt: skip
UNITS = {"si_sdr": "dB", "si_sdri": "dB", "sdr": "dB", "sdri": "dB", "input_si_sdr": "dB", "level_diff": "dB"}


class Clip(NamedTuple):
    """One signal on a page: its label, its WAV, where its spectrogram strip goes (None: no strip) and, to
    draw the strip, its audio (None: link ``png`` if it exists).  Shape: audio (time,)."""

    label: str
    wav: Path
    png: Path | None = None
    audio: np.ndarray | torch.Tensor | None = None


class Item(NamedTuple):
    """One input of a listening page: its title, facts shown with it (label -> text) and its clips."""

    title: str
    facts: Mapping[str, Any]
    clips: Sequence[Clip]


class Extremes:
    """The ``n`` items of lowest and the ``n`` of highest key offered so far, in bounded memory (a NaN key is lowest).

    >>> e = Extremes(1)
    >>> for i, key in enumerate([3.0, 1.0, float("nan"), 5.0, 2.0]):
    ...     e.offer(key, i, f"item {i}")
    >>> e.chosen()
    {2: 'item 2', 3: 'item 3'}
    """

    def __init__(self, n: int):
        self.n = n
        self.low: list[tuple[float, int, Any]] = []  # (-key, -index, item): the top is the highest kept
        self.high: list[tuple[float, int, Any]] = []  # (key, index, item): the top is the lowest kept

    def offer(self, key: float, index: int, item: Any) -> None:
        if self.n <= 0:
            return
        key = key if math.isfinite(key) else -math.inf
        for heap, entry in ((self.low, (-key, -index, item)), (self.high, (key, index, item))):
            if len(heap) < self.n:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:
                heapq.heapreplace(heap, entry)

    def chosen(self) -> dict[int, Any]:
        """``{index: item}`` of the kept items, by index."""
        kept = {-i: item for _, i, item in self.low} | {i: item for _, i, item in self.high}
        return dict(sorted(kept.items()))


# -- pictures -----------------------------------------------------------------------------------


def _plotting() -> Any:
    """matplotlib's Figure, Agg canvas and colormaps, and Pillow's Image (a namespace), or None without them."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from PIL import Image
    except ImportError:
        return None
    return type("Plotting", (), {"Figure": Figure, "Canvas": FigureCanvasAgg, "Image": Image, "mpl": matplotlib})


def spectrogram(audio: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
    """Power spectrogram in dB, averaged down to at most ``STRIP_HEIGHT x STRIP_WIDTH`` (16 ms Hann frames, hop 8 ms).

    Shape: audio (time,) -> (freq rows, columns), row 0 the lowest frequencies.
    """
    x = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    x = x.astype(np.float32, copy=False).reshape(-1)
    n_fft = 2 ** max(4, round(math.log2(0.016 * sample_rate)))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 2]  # (frames, n_fft), a view
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    power = np.square(np.abs(np.fft.rfft(frames * window, axis=1)))[:, 1:].T  # (n_fft / 2, frames): DC left out
    rows = min(STRIP_HEIGHT, power.shape[0])
    power = power.reshape(rows, -1, power.shape[1]).mean(axis=1)  # (rows, frames): n_fft / 2 is a power of 2
    columns = min(STRIP_WIDTH, power.shape[1])
    starts = (np.arange(columns) * power.shape[1]) // columns  # groups of frames, as equal as can be
    counts = np.diff(np.append(starts, power.shape[1]))
    power = np.add.reduceat(power, starts, axis=1) / counts  # (rows, columns)
    return 10 * np.log10(power + 1e-12)


def draw_strips(clips: Sequence[Clip], sample_rate: int) -> bool:
    """Draw the spectrogram strip (an 8-bit palette PNG) of each clip with audio and a ``png``, all on one
    colour scale (``DB_RANGE`` dB below the loudest bin among them).  Returns False, drawing nothing,
    without matplotlib."""
    plotting = _plotting()
    if plotting is None:
        return False
    specs = {clip.png: spectrogram(clip.audio, sample_rate) for clip in clips if clip.png and clip.audio is not None}
    if not specs:
        return True
    top = max(float(s.max()) for s in specs.values())
    palette = (plotting.mpl.colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    for png, spec in specs.items():
        index = np.clip((spec - (top - DB_RANGE)) * (255 / DB_RANGE), 0, 255).round().astype(np.uint8)[::-1]
        image = plotting.Image.fromarray(np.ascontiguousarray(index))  # top row: the highest frequency
        image.putpalette(palette.tobytes())  # "L" -> "P": 8 bits a pixel
        atomic_write(png, lambda tmp, image=image: image.save(tmp, format="PNG", optimize=True))
    return True


def _figure(plotting: Any, path: Path, draw) -> None:
    fig = plotting.Figure(figsize=(4.8, 3.2), constrained_layout=True)
    plotting.Canvas(fig)
    draw(fig.add_subplot())
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))


def draw_eval_plots(folder: Path, rows: Sequence[Mapping[str, Any]]) -> dict[str, Path] | None:
    """The histogram of SI-SDRi, and SI-SDRi against input SI-SDR and against the voices' level difference.

    Returns ``{caption: png}``, or None without matplotlib.
    """
    plotting = _plotting()
    if plotting is None:
        return None
    column = lambda key: np.array([float(row.get(key, math.nan)) for row in rows])  # noqa: E731
    sisdri = column("si_sdri")
    out: dict[str, Path] = {}

    def histogram(ax):
        finite = sisdri[np.isfinite(sisdri)]
        ax.hist(finite, bins=min(40, max(5, int(np.sqrt(len(finite))))), color="#3b6ea8", edgecolor="white")
        ax.set_xlabel("SI-SDRi (dB)")
        ax.set_ylabel("mixtures")

    _figure(plotting, folder / "si_sdri_histogram.png", histogram)
    out["SI-SDRi of every mixture"] = folder / "si_sdri_histogram.png"
    for key, name, caption in (
        ("input_si_sdr", "si_sdri_vs_input_si_sdr.png", "SI-SDRi against the input's SI-SDR"),
        ("level_diff", "si_sdri_vs_level_difference.png", "SI-SDRi against the level difference between the voices"),
    ):
        x = column(key)

        def scatter(ax, x=x, key=key):
            ax.scatter(x, sisdri, s=8, alpha=0.6, color="#3b6ea8", linewidths=0)
            ax.set_xlabel(f"{LABELS[key]} (dB)")
            ax.set_ylabel("SI-SDRi (dB)")
            ax.grid(alpha=0.3)

        _figure(plotting, folder / name, scatter)
        out[caption] = folder / name
    return out


# -- HTML ---------------------------------------------------------------------------------------

CSS = """
:root { color-scheme: light dark; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 0 1rem 2rem;
  max-width: 80rem; line-height: 1.4; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25rem 0.5rem; border-bottom: 1px solid #8884; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; }
th[data-type] { cursor: pointer; white-space: nowrap; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
.scroll { overflow-x: auto; max-width: 100%; }
#mixtures { width: 100%; }
#mixtures tbody { border-bottom: 1px solid #8884; }
#mixtures td { border-bottom: 0; }
#mixtures td.listen > div { position: sticky; left: 0; max-width: calc(100vw - 3rem); padding-bottom: 0.75rem; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figcaption { font-size: 0.9rem; }
img { max-width: 100%; height: auto; }
.clips { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: 0.5rem 1rem;
  min-width: 15rem; }
.clip audio { width: 100%; height: 2.2rem; }
.clip img { display: block; width: 100%; height: 4rem; }
.note { padding: 0.5rem 0.75rem; border-left: 4px solid #c90; background: #c901; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dt { font-weight: 600; } dd { margin: 0; overflow-wrap: anywhere; }
code { overflow-wrap: anywhere; } dd code { display: inline-block; margin-right: 0.6em; }
section.item { border-top: 1px solid #8884; }
@media (max-width: 40rem) { dl { grid-template-columns: 1fr; } dd { margin-bottom: 0.4rem; } }
"""

SORT_JS = """
(function () {
  function value(body, col, numeric) {
    var cell = body.rows[0].cells[col], v = cell.getAttribute("data-v");
    if (v === null) { v = cell.textContent; }
    return numeric ? (v === "" ? NaN : parseFloat(v)) : v;
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var type = th.getAttribute("data-type");
      if (!type) { return; }
      th.tabIndex = 0;
      function sort() {
        var ascending = th.getAttribute("aria-sort") !== "ascending", numeric = type === "number";
        var bodies = Array.prototype.slice.call(table.tBodies);  // one a row, with its players' row
        var keyed = bodies.map(function (body, i) { return [value(body, col, numeric), i, body]; });
        keyed.sort(function (a, b) {
          var x = a[0], y = b[0], c;
          if (numeric && (isNaN(x) || isNaN(y))) { c = isNaN(x) ? (isNaN(y) ? 0 : 1) : -1; return c || a[1] - b[1]; }
          c = numeric ? x - y : x.localeCompare(y);
          return (ascending ? c : -c) || a[1] - b[1];
        });
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var fragment = document.createDocumentFragment();
        keyed.forEach(function (k) { fragment.appendChild(k[2]); });
        table.appendChild(fragment);
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
  });
})();
"""


def esc(value: Any) -> str:
    """``value`` as HTML text: ``&``, ``<``, ``>`` and both quotes escaped.

    >>> esc("<script>alert(1)</script>.wav")
    '&lt;script&gt;alert(1)&lt;/script&gt;.wav'
    """
    return html.escape(str(value), quote=True)


def href(path: Path, page_dir: Path) -> str:
    """The URL of ``path`` relative to the page's folder, percent-encoded and escaped for an attribute.

    >>> href(Path("/r/a b/<x>#1.wav"), Path("/r"))
    'a%20b/%3Cx%3E%231.wav'
    """
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(page_dir))
    return esc(urllib.parse.quote(rel.replace(os.sep, "/"), safe="/"))


def _number(value: Any, digits: int = 2) -> tuple[str, str]:
    """``(data-v, shown)`` for a table cell: the value for sorting and as shown (NaN: empty and a dash)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "", esc(value)
    return ("", "&ndash;") if not math.isfinite(x) else (f"{x:.4f}", f"{x:.{digits}f}")


def _facts(facts: Mapping[str, Any]) -> str:
    """A definition list; a mapping value is shown as ``key = value`` pairs."""
    out = []
    for label, value in facts.items():
        if isinstance(value, Mapping):
            shown = " ".join(f"<code>{esc(k)} = {esc(v)}</code>" for k, v in value.items())
        else:
            shown = esc(value)
        out.append(f"<dt>{esc(label)}</dt><dd>{shown}</dd>")
    return f"<dl>{''.join(out)}</dl>"


def _clips(clips: Sequence[Clip], page_dir: Path, preload: str) -> str:
    parts = []
    for clip in clips:
        strip = ""
        if clip.png is not None:
            strip = f'<img src="{href(clip.png, page_dir)}" alt="spectrogram of {esc(clip.label)}" loading="lazy">'
        parts.append(
            f'<div class="clip"><div>{esc(clip.label)}</div>'
            f'<audio controls preload="{preload}" src="{href(clip.wav, page_dir)}"></audio>{strip}</div>'
        )
    return f'<div class="clips">{"".join(parts)}</div>'


def _page(title: str, body: str) -> str:
    digest = base64.b64encode(hashlib.sha256(SORT_JS.encode()).digest()).decode()
    policy = f"default-src 'self' file:; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; object-src 'none'"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n<script>{SORT_JS}</script>\n</body>\n</html>\n"
    )


def _write_page(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def _no_plot_note(what: str) -> str:
    return f'<p class="note">No {what}: matplotlib is not installed (<code>{esc(PLOT_HINT)}</code>).</p>'


# -- the pages ------------------------------------------------------------------------------------


def write_eval_report(
    folder: Path,
    rows: Sequence[Mapping[str, Any]],
    *,
    names: Sequence[str],
    facts: Mapping[str, Any],
    chosen: Mapping[int, Sequence[Clip]],
    sample_rate: int,
    title: str = "Evaluation",
) -> Path:
    """Write ``<folder>/report.html`` (plots in ``<folder>/report/``) and return its path.

    ``rows``: one per mixture, with ``id``, ``seconds``, each metric in ``names`` and, when known,
    ``input_si_sdr``, ``level_diff`` (dB between the loudest and the quietest voice) and ``speakers``.
    ``chosen``: the clips of the rows (by index) that get players and spectrogram strips.
    """
    folder = Path(folder)
    assets = folder / "report"
    drawn = draw_strips([clip for clips in chosen.values() for clip in clips], sample_rate)
    chosen = {i: [c if drawn else c._replace(png=None) for c in clips] for i, clips in chosen.items()}
    plots = draw_eval_plots(assets, rows)
    if plots is None:
        for stale in ("si_sdri_histogram.png", "si_sdri_vs_input_si_sdr.png", "si_sdri_vs_level_difference.png"):
            (assets / stale).unlink(missing_ok=True)  # from an earlier run: not these results

    metrics = [name for name in names if any(name in row for row in rows)]
    summary = ["<tr><th>metric</th><th class=n>mean</th><th class=n>median</th><th class=n>mixtures</th></tr>"]
    for key in [*metrics, "input_si_sdr", "level_diff"]:
        values = np.array([float(row.get(key, math.nan)) for row in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        if not len(finite):
            continue
        unit = f" ({UNITS[key]})" if key in UNITS else ""
        summary.append(
            f"<tr><td>{esc(LABELS.get(key, key))}{unit}</td><td class=n>{finite.mean():.2f}</td>"
            f"<td class=n>{np.median(finite):.2f}</td><td class=n>{len(finite)}</td></tr>"
        )

    columns = [("id", "mixture", "text")]
    if any(row.get("speakers") for row in rows):
        columns.append(("speakers", "speakers", "text"))
    columns.append(("seconds", "seconds", "number"))
    columns += [(key, LABELS.get(key, key), "number") for key in metrics]
    columns += [(key, f"{LABELS[key]} (dB)", "number") for key in ("input_si_sdr", "level_diff")
                if any(key in row for row in rows)]  # fmt: skip
    order = sorted(range(len(rows)), key=lambda i: _worst_first(rows[i].get("si_sdri")))
    preload = "metadata" if sum(map(len, chosen.values())) <= PRELOAD_LIMIT else "none"
    head = []
    for key, label, kind in columns:
        sort = ' aria-sort="ascending"' if key == "si_sdri" else ""
        head.append(f'<th data-type="{kind}"{sort}{" class=n" if kind == "number" else ""}>{esc(label)}</th>')
    body = []
    for i in order:
        row, cells = rows[i], []
        for key, _, kind in columns:
            if kind == "number":
                data, shown = _number(row.get(key, math.nan), 1 if key == "seconds" else 2)
                cells.append(f'<td class=n data-v="{data}">{shown}</td>')
            else:
                cells.append(f"<td>{esc(row.get(key, ''))}</td>")
        listen = ""
        if i in chosen:
            clips = _clips(chosen[i], folder, preload)
            listen = f'<tr><td class="listen" colspan="{len(columns)}"><div>{clips}</div></td></tr>'
        body.append(f"<tbody><tr>{''.join(cells)}</tr>{listen}</tbody>")

    n_chosen = len(chosen)
    parts = [f"<h1>{esc(title)}</h1>", _facts(facts), "<h2>Summary</h2>", f"<table>{''.join(summary)}</table>"]
    parts.append("<h2>Plots</h2>")
    if plots is None:
        parts.append(_no_plot_note("plots and no spectrograms"))
    else:
        figures = [f'<figure><img src="{href(png, folder)}" alt="{esc(caption)}"><figcaption>{esc(caption)}'
                   "</figcaption></figure>" for caption, png in plots.items()]  # fmt: skip
        parts.append(f'<div class="plots">{"".join(figures)}</div>')
    parts.append(f"<h2>Every mixture ({len(rows)})</h2>")
    parts.append(
        f"<p>Worst SI-SDRi first; click a column's header to sort by it. {n_chosen} of the worst and best rows "
        "have players for the mixture, each reference and each estimate (matched to its reference)"
        + (" and a spectrogram of each" if drawn else "") + ".</p>"
    )  # fmt: skip
    parts.append(
        f'<div class="scroll"><table class="sortable" id="mixtures"><thead><tr>{"".join(head)}</tr></thead>\n'
        + "\n".join(body)
        + "\n</table></div>"
    )
    path = folder / PAGE
    _write_page(path, _page(title, "\n".join(parts)))
    return path


_ROW_FILE = re.compile(r"(mixture|s\d+|s\d+_ref)\.(wav|png)")


def remove_stale_rows(assets: Path, keep: Collection[str]) -> None:
    """Delete the row folders under ``assets`` other than ``keep`` (an earlier run's): their WAVs and PNGs, then
    the folder if that empties it.  Anything else is left alone."""
    if not assets.is_dir():
        return
    for folder in assets.iterdir():
        if folder.name in keep or not folder.is_dir() or folder.is_symlink():
            continue
        for path in folder.iterdir():
            if _ROW_FILE.fullmatch(path.name) and path.is_file():
                path.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def _worst_first(value: Any) -> tuple[int, float]:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    return (0, x) if math.isfinite(x) else (1, 0.0)


def write_listen_report(
    folder: Path,
    items: Sequence[Item],
    *,
    title: str,
    facts: Mapping[str, Any],
    failed: Mapping[str, str] | None = None,
    drawn: bool = True,
) -> Path:
    """Write ``<folder>/report.html``: the facts, then per item its facts and players (with the strips that
    exist), then the inputs that ``failed`` (name -> error).  ``drawn``: whether strips were drawn
    (False: the page says how to get them).  Returns the page's path."""
    folder = Path(folder)
    preload = "metadata" if sum(len(item.clips) for item in items) <= PRELOAD_LIMIT else "none"
    parts = [f"<h1>{esc(title)}</h1>", _facts(facts)]
    if not drawn:
        parts.append(_no_plot_note("spectrograms"))
    for item in items:
        parts.append(f'<section class="item"><h2>{esc(item.title)}</h2>{_facts(item.facts)}')
        parts.append(f"{_clips(item.clips, folder, preload)}</section>")
    if failed:
        listed = "".join(f"<li><code>{esc(name)}</code>: {esc(error)}</li>" for name, error in failed.items())
        parts.append(f"<h2>Failed ({len(failed)})</h2><ul>{listed}</ul>")
    path = folder / PAGE
    _write_page(path, _page(title, "\n".join(parts)))
    return path


def recording_report(
    folder: Path, wavs: Sequence[Path], *, title: str, facts: Mapping[str, Any], draw: bool = True
) -> tuple[Path, bool]:
    """The demo's page for its recording: ``wavs`` (the mixture, then each estimate) read back, a strip beside
    each (``<stem>.png``) unless not ``draw``.  Returns ``(page, whether strips were drawn)``."""
    import soundfile as sf

    clips, rate, seconds = [], 0, 0.0
    for wav in wavs:
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)  # (time, channels)
        seconds = max(seconds, len(audio) / rate)
        label = "mixture" if wav.stem == "mixture" else wav.stem.replace("estimated-", "estimated voice ")
        clips.append(Clip(label, wav, wav.with_suffix(".png") if draw else None, audio.mean(axis=1)))
    drawn = draw and draw_strips(clips, rate)
    clips = [Clip(c.label, c.wav, c.png if drawn else None) for c in clips]  # only this run's strips
    item = Item("recording", {"length": f"{seconds:.1f} s"}, clips)
    return write_listen_report(folder, [item], title=title, facts=facts, drawn=drawn or not draw), drawn
