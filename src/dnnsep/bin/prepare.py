"""Download LibriSpeech (or use an extracted copy) and write N-speaker mixture lists.

    python -m dnnsep.bin.prepare DATASET_DIR N_SOURCES [--librispeech_root DIR | --mirror URL] [--seed S]

Writes ``DATASET_DIR/<N>mix/{train,valid,test}.json`` (format: :mod:`dnnsep.data.lists`) from
train-clean-100, dev-clean and test-clean.  Rerunning is cheap: complete subsets are not
downloaded again, and identical lists are left as they are.  One prepare at a time per
DATASET_DIR: a second one is refused at once, naming the first (:mod:`dnnsep.locking`).

``--reverb rooms|measured`` and ``--noise synthetic|files`` (or ``--noise_corpus NAME``, downloaded into
DATASET_DIR/noise/NAME, its licence printed) give every mixture a room and noise (:mod:`dnnsep.data.scene`),
drawn from a stream per split and seed that training's on-the-fly draws never use; noise files are
split so that valid and test noise is never trained on (:mod:`dnnsep.data.noise`).
"""

from __future__ import annotations

import argparse
import math
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import remove_stale_temporaries
from ..cli import check_number, need_directory, os_error, printable, prog, run
from ..data.librispeech import SAMPLE_RATE, fetch_subsets, find_root, link_root, scan_subset
from ..data.lists import SPLITS, build_list, list_path, summarize, write_list
from ..data.noise import CORPORA, NoiseOptions, fetch_corpus
from ..data.rooms import TARGETS, RoomOptions
from ..data.scene import SceneOptions, add_scenes
from ..errors import DnnsepError
from ..locking import hold

DEFAULT_SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


def _seconds_or_full(text: str) -> float | None:
    if text.lower() == "full":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'full', got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0 or 'full', got {text}")
    return value


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("python -m dnnsep.bin.prepare"),
        description="Download LibriSpeech (train-clean-100, dev-clean, test-clean) and write mixture lists "
        "DATASET_DIR/<N>mix/{train,valid,test}.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("dataset_dir", metavar="DATASET_DIR", help="where LibriSpeech/ and the lists go")
    parser.add_argument("n_sources", metavar="N_SOURCES", type=int, help="speakers per mixture (2, 3, ...)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--librispeech_root",
        metavar="DIR",
        help="use this extracted copy (the LibriSpeech folder or its parent) instead of downloading; "
        "DATASET_DIR/LibriSpeech becomes a link to it",
    )
    source.add_argument(
        "--mirror",
        metavar="URL",
        help="download from URL/<subset>.tar.gz instead of https://www.openslr.org/resources/12, "
        "checking the md5 values in URL/md5sum.txt",
    )
    parser.add_argument(
        "--subsets", nargs=3, metavar=("TRAIN", "VALID", "TEST"), default=list(DEFAULT_SUBSETS),
        help="LibriSpeech subsets for the train, valid and test lists",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the mixture draw (lists are identical per seed)")
    parser.add_argument("--segment", type=float, default=4.0, help="length of training mixtures, in seconds")
    parser.add_argument(
        "--eval_segment",
        type=_seconds_or_full,
        default=4.0,
        help="length of valid/test mixtures in seconds, or 'full' for whole utterances "
        "(each mixture as long as its shortest utterance)",
    )
    parser.add_argument(
        "--gain_db",
        type=float,
        default=2.5,
        help="each source is normalised to --level_dbfs RMS, then gets a gain uniform in [-G, +G] dB "
        "(so relative levels are within +-2G dB)",
    )
    parser.add_argument("--level_dbfs", type=float, default=-25.0, help="RMS level each source is normalised to")
    for split in SPLITS:
        parser.add_argument(
            f"--n_{split}", type=int, default=None, metavar="N",
            help=f"number of {split} mixtures (default: one per utterance long enough)",
        )  # fmt: skip
    scene = parser.add_argument_group("rooms and noise (every split's mixtures)")
    scene.add_argument(
        "--reverb",
        choices=("none", "rooms", "measured"),
        default="none",
        help="simulated shoebox rooms (pip install 'dnnsep[rooms]'), or measured responses (--rir_root)",
    )
    scene.add_argument("--rir_root", metavar="DIR", help="folder of measured impulse responses (*.wav)")
    scene.add_argument(
        "--rt60",
        nargs=2,
        type=float,
        default=[0.1, 0.8],
        metavar=("MIN", "MAX"),
        help="RT60 range of simulated rooms, seconds",
    )
    scene.add_argument(
        "--reverb_target",
        choices=TARGETS,
        default="reverberant",
        help="the lists' targets in rooms: reverberant, or direct path + 50 ms early reflections",
    )
    scene.add_argument(
        "--noise",
        choices=("none", "synthetic", "files"),
        default="none",
        help="synthetic (coloured, babble, hum, bursts) or files under --noise_root",
    )
    scene.add_argument("--noise_root", metavar="DIR", help="folder of noise recordings (--noise files)")
    scene.add_argument(
        "--noise_corpus",
        choices=sorted(CORPORA),
        help="download this noise corpus into DATASET_DIR/noise/NAME and use it (--noise files)",
    )
    scene.add_argument("--noise_mirror", metavar="URL", help="download the noise corpus from URL (with md5sum.txt)")
    scene.add_argument(
        "--snr",
        nargs=2,
        type=float,
        default=[-5.0, 15.0],
        metavar=("MIN", "MAX"),
        help="SNR range of the noise re the speech, dB",
    )
    parser.add_argument("--keep_archives", action="store_true", help="keep the .tar.gz files after extraction")
    parser.add_argument("--retries", type=int, default=3, help="retries of a broken download (each resumes)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing lists that differ")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser


def check_mirror(url: str) -> str:
    """The ``--mirror`` base address without a trailing slash; refuses (one line) what cannot be one."""
    shown = printable(url, limit=200)
    if not url.strip() or url != url.strip() or not url.isprintable() or any(c.isspace() for c in url):
        raise DnnsepError(f"--mirror {shown!r}: not a URL (empty, or with spaces or control characters)")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as err:
        raise DnnsepError(f"--mirror {shown!r}: not a URL ({err})") from None
    if parts.scheme not in ("http", "https", "file"):
        raise DnnsepError(
            f"--mirror {shown!r}: needs an http://, https:// or file:// address of a folder holding "
            "<subset>.tar.gz and md5sum.txt"
        )
    if parts.scheme != "file" and not parts.hostname:
        raise DnnsepError(f"--mirror {shown!r}: no host name")
    if parts.query or parts.fragment:
        raise DnnsepError(f"--mirror {shown!r}: give the folder's address, without ?query or #fragment")
    try:
        parts.port  # noqa: B018 -- raises on a malformed port
    except ValueError:
        raise DnnsepError(f"--mirror {shown!r}: malformed port number") from None
    if parts.scheme == "file" and not Path(urllib.parse.unquote(parts.path)).is_dir():
        raise DnnsepError(f"--mirror {shown!r}: {parts.path} is not a folder")
    return url.rstrip("/")


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.n_sources < 2:
        raise DnnsepError(f"N_SOURCES must be at least 2, got {args.n_sources}")
    if args.seed < 0 or args.retries < 0:
        raise DnnsepError("--seed and --retries must be >= 0")
    check_number("--segment", args.segment, low=0, high=3600, low_open=True)
    check_number("--gain_db", args.gain_db, low=0, high=60)
    check_number("--level_dbfs", args.level_dbfs, low=-120, high=0)
    for split in SPLITS:
        if getattr(args, f"n_{split}") is not None and getattr(args, f"n_{split}") < 1:
            raise DnnsepError(f"--n_{split} must be >= 1")
    mirror = check_mirror(args.mirror) if args.mirror is not None else None
    if args.noise_mirror is not None:
        try:
            args.noise_mirror = check_mirror(args.noise_mirror)
        except DnnsepError as err:
            raise DnnsepError(str(err).replace("--mirror", "--noise_mirror", 1)) from None
    scene_options(args, Path(args.dataset_dir))  # its errors before any download
    dataset_dir = need_directory(args.dataset_dir, what="DATASET_DIR")
    if args.librispeech_root and Path(args.librispeech_root).expanduser().is_file():
        raise DnnsepError(f"{args.librispeech_root}: is a file, not a directory (--librispeech_root)")
    try:
        with hold(dataset_dir, what="dataset folder"):  # one prepare per dataset folder at a time
            prepare(args, dataset_dir, mirror)
    except OSError as err:  # full or read-only disk, permissions
        raise os_error(err, dataset_dir) from None
    return 0


def scene_options(args: argparse.Namespace, dataset_dir: Path) -> SceneOptions | None:
    """The rooms and noise the options ask for (``None``: dry and clean lists); one-line errors name the option."""
    corpus_root = str(dataset_dir.expanduser().resolve() / "noise" / args.noise_corpus) if args.noise_corpus else None
    if args.noise_corpus and (args.noise == "synthetic" or args.noise_root not in (None, corpus_root)):
        raise DnnsepError("--noise_corpus: gives the noise files itself; drop --noise synthetic / --noise_root")
    if args.noise_corpus:
        args.noise, args.noise_root = "files", corpus_root
    if args.reverb == "measured" and not args.rir_root:
        raise DnnsepError("--rir_root: --reverb measured needs a folder of impulse responses (*.wav)")
    if not 0 < args.rt60[0] <= args.rt60[1]:
        raise DnnsepError(f"--rt60 {args.rt60[0]:g} {args.rt60[1]:g}: needs 0 < MIN <= MAX seconds")
    if not args.snr[0] <= args.snr[1]:
        raise DnnsepError(f"--snr {args.snr[0]:g} {args.snr[1]:g}: needs MIN <= MAX dB")
    room = RoomOptions(rt60=tuple(args.rt60)) if args.reverb == "rooms" else None
    noise = None
    if args.noise != "none":
        if args.noise == "files" and not args.noise_root:
            raise DnnsepError("--noise_root: --noise files needs a folder of noise recordings (or --noise_corpus)")
        noise = NoiseOptions(source=args.noise, snr_db=tuple(args.snr), root=args.noise_root)
    if room is None and noise is None and args.reverb != "measured":
        return None
    return SceneOptions(room=room, rir_root=args.rir_root if args.reverb == "measured" else None, noise=noise)


def prepare(args: argparse.Namespace, dataset_dir: Path, mirror: str | None) -> None:
    """Fetch or link the corpus, then write the three lists (the work of :func:`main`, under its lock)."""
    progress = not args.no_progress
    if args.librispeech_root:
        link_root(dataset_dir, find_root(args.librispeech_root, args.subsets))
    else:
        fetch_subsets(
            dataset_dir,
            args.subsets,
            mirror=mirror,
            keep_archives=args.keep_archives,
            retries=args.retries,
            progress=progress,
        )
    if args.noise_corpus:
        fetch_corpus(dataset_dir, args.noise_corpus, mirror=args.noise_mirror, retries=args.retries,
                     keep_archive=args.keep_archives, progress=progress)  # fmt: skip
    scenes = scene_options(args, dataset_dir)
    readme = dataset_dir / "LibriSpeech" / "README.TXT"
    made_here = readme.is_file() and "made by dnnsep" in readme.read_text(errors="replace")
    kind = "synthetic " if made_here else ""  # the offline corpora that make_corpus writes say so
    scanned = {}
    for split, subset in zip(SPLITS, args.subsets):
        if subset not in scanned:
            scanned[subset] = scan_subset(dataset_dir, subset, progress=progress)
        utterances = scanned[subset]
        seconds = args.segment if split == "train" else args.eval_segment
        segment = None if seconds is None else round(seconds * SAMPLE_RATE)
        lst = build_list(
            utterances,
            split=split,
            subset=subset,
            n_sources=args.n_sources,
            seed=args.seed,
            segment_frames=segment,
            n_mixtures=getattr(args, f"n_{split}"),
            gain_db=args.gain_db,
            level_dbfs=args.level_dbfs,
            sample_rate=SAMPLE_RATE,
        )
        if scenes is not None:
            lst = add_scenes(lst, scenes, root=dataset_dir, reverb_target=args.reverb_target)
        path = list_path(dataset_dir, args.n_sources, split)
        remove_stale_temporaries(path.parent)  # left by a prepare that was killed while writing a list
        written = write_list(lst, path, overwrite=args.overwrite)
        stats = summarize(lst)
        short = sum(u.frames < (segment or 0) for u in utterances)
        print(
            f"{split}: {stats['mixtures']} mixtures, {stats['hours']:.2f} h, {stats['speakers']} speakers "
            f"from {kind}{subset}" + (f" ({short} utterances shorter than {seconds:g} s left out)" if short else "")
            + f" -> {path}" + ("" if written else " (unchanged)")
        )  # fmt: skip
        if scenes is not None:
            print(f"  {split}: {describe_scenes(lst, args)}")
    sys.stdout.flush()


def describe_scenes(lst: dict, args: argparse.Namespace) -> str:
    """What a list's scenes hold, e.g. ``rooms RT60 0.1-0.8 s (direct targets); noise 5 pink, 3 hum at -5..15 dB``."""
    parts = []
    if args.reverb != "none":
        what = f"RT60 {args.rt60[0]:g}-{args.rt60[1]:g} s" if args.reverb == "rooms" else "measured"
        parts.append(f"rooms {what} ({args.reverb_target} targets)")
    if args.noise != "none":
        kinds: dict[str, int] = {}
        for mix in lst["mixtures"]:
            kind = mix["scene"]["noise"].get("kind", "file")
            kinds[kind] = kinds.get(kind, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        where = f" from {args.noise_corpus or args.noise_root}" if args.noise == "files" else " (synthetic)"
        parts.append(f"noise{where}: {counts} at {args.snr[0]:g}..{args.snr[1]:g} dB")
    return "; ".join(parts)


if __name__ == "__main__":
    run(main)
