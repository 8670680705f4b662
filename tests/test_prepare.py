"""prepare: download from a (loopback) mirror with resume and md5 checks, extract safely, or link a copy."""

from __future__ import annotations

import errno
import io
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest
from corpus import SEGMENT, serve_mirror, tiny_corpus

from dnnsep.bin import prepare
from dnnsep.data import download as download_module
from dnnsep.data import librispeech
from dnnsep.errors import DnnsepError

REPO = Path(__file__).resolve().parents[1]
PREPARE_SH = REPO / "egs" / "librispeech" / "common" / "prepare.sh"
SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory):
    return tiny_corpus(tmp_path_factory)


@pytest.fixture
def mirror(corpus_root, tmp_path):
    with serve_mirror(corpus_root, tmp_path) as server:
        yield server


def run_prepare(dataset_dir, *args) -> int:
    return prepare.main([str(dataset_dir), "2", *map(str, args), "--no_progress", *SEGMENT])


def lists_of(dataset_dir: Path) -> dict[str, bytes]:
    return {split: (dataset_dir / "2mix" / f"{split}.json").read_bytes() for split in ("train", "valid", "test")}


def assert_clean(dataset_dir: Path) -> None:
    """No half-extracted subset and no temporary folder anywhere."""
    corpus = dataset_dir / "LibriSpeech"
    assert not list(corpus.glob(".tmp-*"))
    for subset in corpus.iterdir() if corpus.exists() else []:
        if subset.is_dir():
            assert librispeech.is_complete(subset), subset


@pytest.mark.slow
def test_prepare_sh_from_mirror_and_from_root_write_identical_lists(mirror, corpus_root, tmp_path):
    # bash prepare.sh against the mirror: downloads, verifies, extracts, writes the lists
    done = subprocess.run(
        ["bash", str(PREPARE_SH), "from_mirror", "2", "--mirror", mirror.url, "--no_progress", *SEGMENT],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "train: 18 mixtures" in done.stdout and "6 speakers" in done.stdout
    assert sorted(name for name, _, _ in mirror.log) == sorted(["md5sum.txt", *(f"{s}.tar.gz" for s in SUBSETS)])
    from_mirror = tmp_path / "from_mirror"
    assert_clean(from_mirror)
    assert not list((from_mirror / "downloads").iterdir())  # archives removed after extraction
    assert (from_mirror / "LibriSpeech" / "SPEAKERS.TXT").is_file()
    # the same, sourced from zsh with an existing copy: no network, and the user's shell survives
    script = f'. "{PREPARE_SH}" from_root 2 --librispeech_root "{corpus_root}" --no_progress {" ".join(SEGMENT)}; '
    done = subprocess.run(["zsh", "-c", script + 'echo "rc=$?"'], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip().endswith("rc=0"), done.stderr
    assert lists_of(from_mirror) == lists_of(tmp_path / "from_root")


def test_prepare_sh_sourced_error_is_one_line_and_returns(tmp_path):
    script = f'. "{PREPARE_SH}" ds 2 --librispeech_root "{tmp_path / "nowhere"}"; echo "still here rc=$?"'
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip() == "still here rc=2"
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nowhere" in errors[0] and "train-clean-100" in errors[0]


def test_interrupted_download_resumes_on_rerun(mirror, tmp_path):
    size = (mirror.directory / "dev-clean.tar.gz").stat().st_size
    mirror.drop_once["dev-clean.tar.gz"] = size // 2
    with pytest.raises(DnnsepError, match=r"dev-clean\.tar\.gz: download interrupted .* rerun to resume"):
        run_prepare(tmp_path, "--mirror", mirror.url, "--retries", "0")
    assert (tmp_path / "downloads" / "dev-clean.tar.gz.part").stat().st_size == size // 2
    assert not (tmp_path / "LibriSpeech" / "dev-clean").exists()
    assert librispeech.is_complete(tmp_path / "LibriSpeech" / "train-clean-100")
    mirror.log.clear()
    assert run_prepare(tmp_path, "--mirror", mirror.url, "--retries", "0") == 0
    assert mirror.requests_for("dev-clean.tar.gz") == [("dev-clean.tar.gz", f"bytes={size // 2}-", size - size // 2)]
    assert not mirror.requests_for("train-clean-100.tar.gz")  # complete subsets are not fetched again
    assert_clean(tmp_path)


def test_broken_connection_is_retried_within_one_run(mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.01)
    size = (mirror.directory / "test-clean.tar.gz").stat().st_size
    mirror.drop_once["test-clean.tar.gz"] = 1000
    assert run_prepare(tmp_path, "--mirror", mirror.url) == 0
    assert mirror.requests_for("test-clean.tar.gz") == [
        ("test-clean.tar.gz", None, 1000),
        ("test-clean.tar.gz", "bytes=1000-", size - 1000),
    ]


def test_corrupt_archive_fails_md5_is_not_extracted_and_rerun_downloads_only_what_is_missing(mirror, tmp_path, capsys):
    mirror.corrupt.add("dev-clean.tar.gz")
    with pytest.raises(DnnsepError, match=r"dev-clean\.tar\.gz: md5 mismatch .* deleted; rerun"):
        run_prepare(tmp_path, "--mirror", mirror.url)
    assert not (tmp_path / "LibriSpeech" / "dev-clean").exists()
    assert not (tmp_path / "downloads" / "dev-clean.tar.gz").exists()
    assert not (tmp_path / "2mix").exists()
    assert_clean(tmp_path)
    mirror.corrupt.clear()
    mirror.log.clear()
    assert run_prepare(tmp_path, "--mirror", mirror.url) == 0
    assert sorted(name for name, _, _ in mirror.log) == ["dev-clean.tar.gz", "md5sum.txt", "test-clean.tar.gz"]
    # a rerun after success touches no network at all, and leaves identical lists alone
    mirror.log.clear()
    capsys.readouterr()
    assert run_prepare(tmp_path, "--mirror", mirror.url) == 0
    assert mirror.log == []
    assert capsys.readouterr().out.count("(unchanged)") == 3


def test_half_extracted_subset_is_never_taken_as_complete(mirror, corpus_root, tmp_path, monkeypatch):
    corpus = tmp_path / "LibriSpeech"
    (corpus / "dev-clean" / "junk").mkdir(parents=True)  # an extraction killed midway, by another tool
    (corpus / ".tmp-dev-clean-stale").mkdir()  # one of ours, killed
    calls = []

    def full_disk(tar, member, dest):  # the disk fills up after a few files of train-clean-100
        calls.append(member.name)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_extract(tar, member, dest)

    real_extract = librispeech._extract_member
    monkeypatch.setattr(librispeech, "_extract_member", full_disk)
    with pytest.raises(DnnsepError, match=r"train-clean-100\.tar\.gz: disk full while extracting"):
        run_prepare(tmp_path, "--mirror", mirror.url)
    assert not (corpus / "train-clean-100").exists() and not list(corpus.glob(".tmp-train-clean-100-*"))
    assert (tmp_path / "downloads" / "train-clean-100.tar.gz").is_file()  # verified archive kept for the rerun
    monkeypatch.setattr(librispeech, "_extract_member", real_extract)
    mirror.log.clear()
    assert run_prepare(tmp_path, "--mirror", mirror.url) == 0
    assert not mirror.requests_for("train-clean-100.tar.gz")
    assert not (corpus / "dev-clean" / "junk").exists()
    assert_clean(tmp_path)
    files = lambda top, subset: sorted(p.relative_to(top).as_posix() for p in (top / subset).rglob("*.flac"))
    for subset in SUBSETS:
        assert files(corpus, subset) == files(corpus_root / "LibriSpeech", subset) != []


def test_network_down_gives_one_line_error(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DnnsepError, match=r"md5sum\.txt: download failed \(cannot reach the server") as err:
        run_prepare(tmp_path, "--mirror", f"http://127.0.0.1:{port}", "--retries", "0")
    assert "\n" not in str(err.value)


def test_not_enough_disk_space_is_caught_before_downloading(mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(download_module.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12, 10))
    with pytest.raises(
        DnnsepError, match=r"not enough free space for downloading train-clean-100\.tar\.gz and extracting it"
    ):
        run_prepare(tmp_path, "--mirror", mirror.url)


def test_official_address_and_md5_are_built_in(tmp_path, monkeypatch):
    assert librispeech.OFFICIAL_MD5["train-clean-100"] == "2a93770f6d5c6c964bc36631d331a522"
    assert librispeech.OFFICIAL_MD5["dev-clean"] == "42e2234ba48799c1f50f24a7926300a1"
    assert librispeech.OFFICIAL_MD5["test-clean"] == "32fa31d27d2e1cad72775fee3f4849a9"
    urls = []

    def no_network(url, dest, **kwargs):
        urls.append(url)
        raise DnnsepError("stop")

    monkeypatch.setattr(librispeech, "download", no_network)
    monkeypatch.setattr(librispeech, "fetch_text", lambda *a, **k: pytest.fail("md5sum.txt fetched"))
    with pytest.raises(DnnsepError, match="stop"):
        run_prepare(tmp_path)
    assert urls == ["https://www.openslr.org/resources/12/train-clean-100.tar.gz"]


def test_mirror_without_checksum_for_a_subset_is_refused(mirror, tmp_path):
    md5s = mirror.directory / "md5sum.txt"
    md5s.write_text("".join(line + "\n" for line in md5s.read_text().splitlines() if "test-clean" not in line))
    with pytest.raises(DnnsepError, match=r"test-clean\.tar\.gz: not in http://127\.0\.0\.1:\d+/md5sum\.txt"):
        run_prepare(tmp_path, "--mirror", mirror.url)


@pytest.mark.parametrize("bad", ["../evil.txt", "LibriSpeech/../../evil.txt", "/tmp/evil.txt", "link"])
def test_archive_members_outside_librispeech_are_refused(tmp_path, bad):
    archive = tmp_path / "dev-clean.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        ok = tarfile.TarInfo("LibriSpeech/dev-clean/1/2/1-2-0000.flac")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        member = tarfile.TarInfo(bad if bad != "link" else "LibriSpeech/dev-clean/link")
        if bad == "link":
            member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(member)
        else:
            member.size = 4
            tar.addfile(member, io.BytesIO(b"evil"))
    with pytest.raises(DnnsepError, match=r"dev-clean\.tar\.gz: unexpected member"):
        librispeech.extract_subset(archive, tmp_path / "out" / "LibriSpeech", "dev-clean", progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "LibriSpeech" / "dev-clean").exists()
    assert not list((tmp_path / "out" / "LibriSpeech").glob(".tmp-*"))


def test_librispeech_root_accepts_the_folder_or_its_parent_and_never_clobbers(corpus_root, tmp_path):
    assert run_prepare(tmp_path / "a", "--librispeech_root", corpus_root) == 0
    assert run_prepare(tmp_path / "b", "--librispeech_root", corpus_root / "LibriSpeech") == 0
    assert lists_of(tmp_path / "a") == lists_of(tmp_path / "b")
    assert (tmp_path / "a" / "LibriSpeech").resolve() == (corpus_root / "LibriSpeech").resolve()
    # a later run without --librispeech_root uses the linked copy as it is: no download, nothing written into it
    before = sorted(p.relative_to(corpus_root) for p in corpus_root.rglob("*"))
    assert run_prepare(tmp_path / "a", "--mirror", "http://127.0.0.1:9/unreachable") == 0
    assert sorted(p.relative_to(corpus_root) for p in corpus_root.rglob("*")) == before
    (tmp_path / "c" / "LibriSpeech").mkdir(parents=True)  # a real folder: never replaced by a link
    with pytest.raises(DnnsepError, match=r"c/LibriSpeech already exists and is not"):
        run_prepare(tmp_path / "c", "--librispeech_root", corpus_root)


def test_existing_lists_are_not_silently_replaced(corpus_root, tmp_path):
    assert run_prepare(tmp_path, "--librispeech_root", corpus_root) == 0
    before = lists_of(tmp_path)
    with pytest.raises(DnnsepError, match=r"train\.json: exists with other mixtures .* --overwrite"):
        run_prepare(tmp_path, "--librispeech_root", corpus_root, "--seed", "1")
    assert lists_of(tmp_path) == before
    assert run_prepare(tmp_path, "--librispeech_root", corpus_root, "--seed", "1", "--overwrite") == 0
    assert lists_of(tmp_path)["train"] != before["train"]
