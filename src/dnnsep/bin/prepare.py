"""Download LibriSpeech (or use an extracted copy) and write N-speaker mixture lists.

    python -m dnnsep.bin.prepare DATASET_DIR N_SOURCES [--librispeech_root DIR | --mirror URL] [--seed S]

Writes ``DATASET_DIR/<N>mix/{train,valid,test}.json`` (format: :mod:`dnnsep.data.lists`) from
train-clean-100, dev-clean and test-clean.  Rerunning is cheap: complete subsets are not
downloaded again, and identical lists are left as they are.  One prepare at a time per
DATASET_DIR: a second one is refused at once, naming the first (:mod:`dnnsep.locking`).
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
    dataset_dir = need_directory(args.dataset_dir, what="DATASET_DIR")
    if args.librispeech_root and Path(args.librispeech_root).expanduser().is_file():
        raise DnnsepError(f"{args.librispeech_root}: is a file, not a directory (--librispeech_root)")
    try:
        with hold(dataset_dir, what="dataset folder"):  # one prepare per dataset folder at a time
            prepare(args, dataset_dir, mirror)
    except OSError as err:  # full or read-only disk, permissions
        raise os_error(err, dataset_dir) from None
    return 0


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
    sys.stdout.flush()


if __name__ == "__main__":
    run(main)
