"""LibriSpeech on disk: download, verify, extract safely, or link an existing copy; list its utterances.

Layout (the official one, kept as is)::

    <DATASET_DIR>/LibriSpeech/SPEAKERS.TXT
    <DATASET_DIR>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <DATASET_DIR>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    <DATASET_DIR>/LibriSpeech/<subset>/.dnnsep-complete      # written last, by fetch_subsets
    <DATASET_DIR>/downloads/<subset>.tar.gz[.part]            # removed after extraction by default

A subset is extracted into a temporary folder beside its final place and renamed there only once
complete (with its marker inside), so an interrupted run never leaves a subset a rerun would take
as complete.

>>> sorted(OFFICIAL_MD5)[:3]
['dev-clean', 'dev-other', 'test-clean']
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import soundfile as sf
from tqdm import tqdm

from ..errors import AudioError, DnnsepError
from .download import check_free_space, download, fetch_text, is_disk_full, parse_md5sum, verify_md5

OFFICIAL_URL = "https://www.openslr.org/resources/12"
# md5 of each archive, as published in https://www.openslr.org/resources/12/md5sum.txt; the same values
# are hard-coded in PaddlePaddle/PaddleSpeech, data/librispeech/librispeech.py.  A --mirror brings its
# own md5sum.txt instead.
OFFICIAL_MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
MARKER = ".dnnsep-complete"
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Utterance:
    """One flac file: ``path`` relative to the dataset folder (POSIX separators), its speaker and length."""

    path: str
    speaker: str
    frames: int


def is_complete(subset_dir: str | os.PathLike) -> bool:
    """Whether ``subset_dir`` was fully extracted by :func:`fetch_subsets` (its marker exists)."""
    return (Path(subset_dir) / MARKER).is_file()


def fetch_subsets(
    dataset_dir: str | os.PathLike,
    subsets: Sequence[str],
    *,
    mirror: str | None = None,
    keep_archives: bool = False,
    retries: int = 3,
    progress: bool = True,
) -> Path:
    """Download, verify and extract each missing subset into ``<dataset_dir>/LibriSpeech``; returns that folder.

    Complete subsets are skipped without touching the network.  ``mirror`` replaces the official base
    address; its ``<mirror>/md5sum.txt`` then gives the checksums.  When ``<dataset_dir>/LibriSpeech``
    is a link to an existing copy (see :func:`link_root`), that copy is used as it is.
    """
    dataset_dir = Path(dataset_dir)
    corpus = dataset_dir / "LibriSpeech"
    if corpus.is_symlink():  # linked by --librispeech_root earlier: someone else's copy, never written into
        missing = [s for s in subsets if not (corpus / s).is_dir()]
        if missing:
            raise DnnsepError(
                f"{corpus} links to {corpus.resolve()}, which has no {', '.join(missing)}; "
                "pass --librispeech_root with a complete copy, or remove the link to download"
            )
        return corpus
    todo = [s for s in dict.fromkeys(subsets) if not is_complete(corpus / s)]
    for subset in dict.fromkeys(subsets):
        if subset not in todo:
            print(f"{subset}: already extracted in {corpus / subset}", file=sys.stderr)
    if not todo:
        return corpus
    base = (mirror or OFFICIAL_URL).rstrip("/")
    if mirror:
        md5s = parse_md5sum(fetch_text(f"{base}/md5sum.txt", retries=retries), source=f"{base}/md5sum.txt")
    else:
        md5s = {f"{name}.tar.gz": value for name, value in OFFICIAL_MD5.items()}
    for subset in todo:
        name = f"{subset}.tar.gz"
        if name not in md5s:
            where = f"{base}/md5sum.txt" if mirror else f"the official list ({', '.join(OFFICIAL_MD5)})"
            raise DnnsepError(f"{name}: not in {where}; check --subsets")
        if (corpus / subset).exists():
            print(f"{subset}: {corpus / subset} is incomplete (no {MARKER}); extracting it again", file=sys.stderr)
        archive = download(
            f"{base}/{name}", dataset_dir / "downloads" / name, retries=retries, progress=progress, space_factor=2.05
        )  # room for the archive and its extraction (flac does not compress further)
        verify_md5(archive, md5s[name], progress=progress)
        extract_subset(archive, corpus, subset, progress=progress)
        if not keep_archives:
            archive.unlink()
        print(f"{subset}: extracted into {corpus / subset}", file=sys.stderr)
    return corpus


def extract_subset(
    archive: str | os.PathLike, corpus: str | os.PathLike, subset: str, *, progress: bool = True
) -> Path:
    """Extract ``LibriSpeech/<subset>/`` of ``archive`` into ``corpus/<subset>`` atomically (see module doc)."""
    archive, corpus = Path(archive), Path(corpus)
    corpus.mkdir(parents=True, exist_ok=True)
    for stale in corpus.glob(f".tmp-{subset}-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    check_free_space(corpus, int(archive.stat().st_size * 1.05), what=f"extracting {archive.name}")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{subset}-", dir=corpus))
    try:
        n_files = _safe_extract(archive, tmp, progress=progress)
        extracted = tmp / "LibriSpeech" / subset
        if not extracted.is_dir():
            raise DnnsepError(f"{archive}: holds no LibriSpeech/{subset}/ folder; is it the right archive?")
        (extracted / MARKER).write_text(f"{archive.name} {n_files} files\n")
        final = corpus / subset
        if final.exists() or final.is_symlink():  # an incomplete leftover: move it aside, deleted below
            os.replace(final, tmp / "old")
        os.replace(extracted, final)
        for top in sorted((tmp / "LibriSpeech").iterdir()):  # SPEAKERS.TXT, README.TXT, ...
            if top.is_file() and not (corpus / top.name).exists():
                os.replace(top, corpus / top.name)
        return final
    except OSError as err:
        if is_disk_full(err):
            raise DnnsepError(
                f"{archive}: disk full while extracting into {corpus}; free some space and rerun "
                "(nothing half-extracted was kept)"
            ) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe_extract(archive: Path, dest: Path, *, progress: bool) -> int:
    """Stream-extract a .tar.gz whose members all lie under ``LibriSpeech/``; returns the number of files."""
    n_files = 0
    size = archive.stat().st_size
    bar = tqdm(total=size, desc=f"extract {archive.name}", unit="B", unit_scale=True, unit_divisor=1024,
               disable=not progress, mininterval=0.5, file=sys.stderr, leave=False)  # fmt: skip
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=_Counting(raw, bar), mode="r|gz") as tar:
            for member in tar:
                _check_member(member, archive)
                _extract_member(tar, member, dest)
                n_files += member.isreg()
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise DnnsepError(
            f"{archive}: truncated or corrupt archive ({err}); delete it and rerun to download it again"
        ) from None
    finally:
        bar.close()
    return n_files


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.12, and 3.9.17 / 3.10.12 / 3.11.4 backports
        tar.extract(member, dest, filter="data")
    else:  # members were checked by _check_member: regular files and folders under LibriSpeech/ only
        tar.extract(member, dest)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse anything but plain files and folders under ``LibriSpeech/`` (no links, no ``..``)."""
    parts = PurePosixPath(member.name).parts
    ok = (member.isreg() or member.isdir()) and parts and parts[0] == "LibriSpeech" and ".." not in parts
    if not ok or member.name.startswith("/"):
        raise DnnsepError(
            f"{archive}: unexpected member {member.name!r} (not a file under LibriSpeech/); not extracted"
        )


class _Counting:
    """A read-only file wrapper that advances a progress bar by the compressed bytes read."""

    def __init__(self, raw: BinaryIO, bar: tqdm):
        self.raw, self.bar = raw, bar

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.bar.update(len(data))
        return data


def find_root(path: str | os.PathLike, subsets: Iterable[str]) -> Path:
    """The ``LibriSpeech`` folder that holds ``subsets``: ``path`` itself or ``path/LibriSpeech``."""
    path = Path(path).expanduser()
    subsets = list(subsets)
    for candidate in (path / "LibriSpeech", path):
        if all((candidate / s).is_dir() for s in subsets):
            return candidate.resolve()
    missing = [s for s in subsets if not (path / s).is_dir() and not (path / "LibriSpeech" / s).is_dir()]
    raise DnnsepError(
        f"{path}: no LibriSpeech subset {', '.join(missing)} here or in {path / 'LibriSpeech'}; "
        "pass the folder that contains train-clean-100/, dev-clean/, test-clean/ (or its parent)"
    )


def link_root(dataset_dir: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Make ``<dataset_dir>/LibriSpeech`` point at an existing copy ``root`` (a symlink), so that list
    paths (``LibriSpeech/<subset>/...``, relative to ``dataset_dir``) are the same as after a download."""
    dataset_dir, root = Path(dataset_dir), Path(root).resolve()
    link = dataset_dir / "LibriSpeech"
    dataset_dir.mkdir(parents=True, exist_ok=True)
    if link.exists() and link.resolve() == root:
        return link
    if link.is_symlink():
        link.unlink()  # pointed at another copy (or nowhere): repoint it
    elif link.exists():
        raise DnnsepError(
            f"{link} already exists and is not {root}; remove it, or use another DATASET_DIR, "
            "or drop --librispeech_root to use it"
        )
    try:
        link.symlink_to(root, target_is_directory=True)
    except OSError as err:
        raise DnnsepError(f"{link}: cannot create a link to {root} ({err.strerror}); copy or move it there") from None
    return link


def scan_subset(
    dataset_dir: str | os.PathLike, subset: str, *, sample_rate: int = SAMPLE_RATE, progress: bool = True
) -> list[Utterance]:
    """Every ``*.flac`` of ``<dataset_dir>/LibriSpeech/<subset>``, sorted by path, with its length.

    Reads only the file headers.  A file of another sample rate or with several channels is an
    :class:`AudioError` naming it.
    """
    dataset_dir = Path(dataset_dir)
    root = dataset_dir / "LibriSpeech" / subset
    if not root.is_dir():
        raise DnnsepError(f"{root}: no such folder; run prepare to download it, or check --librispeech_root")
    files = sorted(p.relative_to(dataset_dir).as_posix() for p in root.glob("*/*/*.flac"))
    if not files:
        raise DnnsepError(f"{root}: no <speaker>/<chapter>/*.flac files; is it a LibriSpeech subset?")
    utterances = []
    for rel in tqdm(files, desc=f"scan {subset}", disable=not progress, mininterval=0.5, file=sys.stderr, leave=False):
        try:
            info = sf.info(str(dataset_dir / rel))
        except Exception as err:  # soundfile raises LibsndfileError / RuntimeError
            raise AudioError(f"{dataset_dir / rel}: unreadable audio file ({str(err).strip()[:200]})") from None
        if info.samplerate != sample_rate or info.channels != 1:
            raise AudioError(
                f"{dataset_dir / rel}: {info.samplerate} Hz, {info.channels} channel(s); "
                f"expected {sample_rate} Hz mono like LibriSpeech"
            )
        utterances.append(Utterance(path=rel, speaker=rel.split("/")[2], frames=info.frames))
    return utterances
