"""Faults the tools must survive: each test fails if its guard is removed.

Clashing output names, existing outputs, a failing input in a batch, interrupted writes and their
temporaries, NaN in export checks, full and read-only disks (small tmpfs mounts, root only: as in
CI), files where folders go, bad option values, malformed lists, bad mirrors, a server resuming
at the wrong offset, a second process on a locked folder, hostile checkpoints and terminal escape
codes.  Each test takes a few seconds at most.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dnnsep import cli, locking
from dnnsep.bin import evaluate, export, prepare, separate
from dnnsep.checkpoint import STALE_AGE_S, remove_stale_temporaries, temporary_path
from dnnsep.data import download as download_module
from dnnsep.data.lists import FORMAT, VERSION
from dnnsep.errors import CheckpointError, DnnsepError
from dnnsep.models import ConvTasNet, DPRNNConfig, DPRNNTasNet
from dnnsep.models import load as load_model

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=1)
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
ESC = "\x1b"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    DPRNNTasNet(DPRNNConfig(**TINY)).eval().save(path)
    return path


def broken_model(path: Path, value: float) -> Path:
    """A tiny model whose decoder weights are all ``value`` (3e38: its output overflows; nan: NaN weights)."""
    torch.manual_seed(0)
    model = DPRNNTasNet(DPRNNConfig(**TINY)).eval()
    with torch.no_grad():
        model.decoder.conv.weight.fill_(value)
    model.save(path)
    return path


def wav(path: Path, seconds: float = 0.3, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).standard_normal(int(16000 * seconds)).astype(np.float32)
    sf.write(path, 0.1 * x, 16000)
    return path


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*.tmp"))


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A small tmpfs at ``path`` (``size=200k``, ``ro``...), unmounted afterwards; skips without root."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("a full or read-only disk is simulated with a tmpfs mount, which needs root (as in CI)")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until about ``leave`` bytes are free."""
    import shutil

    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as f:
        f.write(bytes(max(0, free - leave)))


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and ESC not in text, text
    return text


# -- 1. output names never collide ------------------------------------------------------------------


def test_separate_outputs_of_clashing_names_are_distinct(tmp_path, model_path, capsys):
    names = ["a.wav", "a.flac", "B.wav", "B.WAV", "x/c.wav", "y/c.wav", "X/c.ogg"]
    for i, name in enumerate(names):
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.1 * np.random.default_rng(i).standard_normal(4800).astype(np.float32), 16000)
    out = tmp_path / "out"
    assert separate.main([str(tmp_path / "in"), "--model", str(model_path), "--out_dir", str(out)]) == 0
    written = sorted(out.rglob("estimated-*.wav"))
    assert len(written) == 2 * len(names)  # none replaced another
    folders = {p.parent.relative_to(out).as_posix() for p in written}
    assert len({f.casefold() for f in folders}) == len(names)  # distinct even on a case-insensitive disk
    # the extension kept only where needed; names equal even with it get ~2
    assert folders == {"a.wav", "a.flac", "B.WAV", "B.wav~2", "x/c.wav", "X/c.ogg", "y/c"}
    assert "Separated 7 file(s)" in capsys.readouterr().err


# -- 2. existing outputs ----------------------------------------------------------------------------


def test_separate_skip_existing_and_the_refusal_names_files(tmp_path, model_path, capsys):
    for name in ("a.wav", "b.wav"):
        wav(tmp_path / "in" / name)
    argv = [str(tmp_path / "in"), "--model", str(model_path), "--out_dir", str(tmp_path / "out")]
    assert separate.main(argv) == 0
    before = (tmp_path / "out" / "a" / "estimated-0.wav").stat().st_mtime_ns
    wav(tmp_path / "in" / "c.wav", seed=3)
    with pytest.raises(DnnsepError) as err:
        separate.main(argv)
    assert "a/estimated-0.wav" in one_line(err.value) and "--skip_existing" in str(err.value)
    assert not (tmp_path / "out" / "c").exists()  # refused before writing anything
    capsys.readouterr()
    assert separate.main([*argv, "--skip_existing"]) == 0
    log = capsys.readouterr().err
    assert "skipping 2 input(s)" in log and "Separated 1 file(s) (2 skipped)" in log
    assert (tmp_path / "out" / "c" / "estimated-1.wav").is_file()
    assert (tmp_path / "out" / "a" / "estimated-0.wav").stat().st_mtime_ns == before


# -- 3. a batch carries on past a failing input -----------------------------------------------------


def test_separate_directory_carries_on_and_names_the_model_for_non_finite_output(
    tmp_path, model_path, monkeypatch, capsys
):
    wav(tmp_path / "in" / "a.wav", 0.3)
    wav(tmp_path / "in" / "b.wav", 0.4)
    (tmp_path / "in" / "c.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    real = separate.separate_long

    def nan_for_b(model, mixture, **kw):
        out = real(model, mixture, **kw)
        return out * np.nan if len(mixture) == 6400 else out

    monkeypatch.setattr(separate, "separate_long", nan_for_b)
    argv = [str(tmp_path / "in"), "--model", str(model_path), "--out_dir", str(tmp_path / "out")]
    assert separate.main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 3, err
    assert f"{model_path}: the model gave NaN or infinite output for {tmp_path / 'in' / 'b.wav'}" in lines[0]
    assert "estimated" not in lines[0]
    assert "c.wav: not a readable audio file" in lines[1]
    assert "Separated 1 file(s) (2 failed)" in err and "2 of 3 file(s) failed" in lines[2]
    assert (tmp_path / "out" / "a" / "estimated-1.wav").is_file() and not (tmp_path / "out" / "b").exists()


def test_separate_a_model_that_overflows_or_holds_nan_is_named(tmp_path):
    wav(tmp_path / "in" / "a.wav")
    overflow = broken_model(tmp_path / "overflow.pth", 3e38)
    with pytest.raises(DnnsepError) as err:
        separate.main([str(tmp_path / "in" / "a.wav"), "--model", str(overflow), "--out_dir", str(tmp_path / "o")])
    assert one_line(err.value).startswith(f"{overflow}: the model gave NaN or infinite output")
    nan = broken_model(tmp_path / "nan.pth", float("nan"))
    with pytest.raises(DnnsepError, match=r"nan\.pth: the model's weights hold NaN or infinite values"):
        separate.main([str(tmp_path / "in"), "--model", str(nan), "--out_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


# -- 4. all-or-nothing writes, stale temporaries -----------------------------------------------------


def test_separate_writes_the_estimates_of_an_input_all_or_nothing(tmp_path, model_path, monkeypatch):
    wav(tmp_path / "a.wav")
    from dnnsep import audio

    calls = []

    def failing_fsync(fd):  # the second estimate's file cannot be completed: a full disk
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audio.os, "fsync", failing_fsync)
    out = tmp_path / "out"
    with pytest.raises(DnnsepError) as err:
        separate.main([str(tmp_path / "a.wav"), "--model", str(model_path), "--out_dir", str(out)])
    assert "no space left on device" in one_line(err.value) and str(out / "a") in str(err.value)
    assert list((out / "a").iterdir()) == []  # neither estimate, and no temporary


def test_separate_removes_stale_temporaries_but_not_a_live_writers(tmp_path, model_path, capsys):
    wav(tmp_path / "a.wav")
    folder = tmp_path / "out" / "a"
    folder.mkdir(parents=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ours = temporary_path(folder / "estimated-0.wav")
        dead = ours.with_name(ours.name.replace(f"-{os.getpid()}-", f"-{dead_pid()}-"))
        alive = ours.with_name(ours.name.replace(f"-{os.getpid()}-", f"-{live.pid}-"))
        old_legacy = folder / ".estimated-1.wav.abcd1234.tmp"  # an older version's name: judged by age
        young_legacy = folder / ".estimated-0.wav.efgh5678.tmp"
        unrelated = [folder / ".notes.tmp", folder / "estimated-0.wav.tmp"]
        for path in (dead, alive, old_legacy, young_legacy, *unrelated):
            path.write_bytes(b"partial")
        os.utime(old_legacy, (time.time() - STALE_AGE_S - 60,) * 2)
        argv = [str(tmp_path / "a.wav"), "--model", str(model_path), "--out_dir", str(tmp_path / "out")]
        assert separate.main(argv) == 0
        assert not dead.exists() and not old_legacy.exists()
        assert alive.exists() and young_legacy.exists() and all(p.exists() for p in unrelated)
        assert "removed 2 unfinished temporary file(s)" in capsys.readouterr().err
    finally:
        live.kill()
        live.wait()


KILLED_EXPORT = """
import sys, time
from dnnsep.bin import export

def slow_write(path, data):  # half the file, then wait to be killed
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        print("writing", flush=True)
        time.sleep(60)

export.write_file = slow_write
export.main(sys.argv[1:])
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_killed_mid_write_keeps_the_previous_file_and_its_temporary_goes(tmp_path, model_path):
    out = tmp_path / "m.torchscript.pt"
    out.write_bytes(b"the previous export")
    argv = ["--format", "torchscript", "--model", str(model_path), "--output", str(out)]
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, *argv], stdout=subprocess.PIPE, env=ENV, text=True
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert out.read_bytes() == b"the previous export"
    left = temporaries(tmp_path)
    assert len(left) == 1 and f"-{child.pid}-" in left[0].name  # the writer is recorded in the name
    assert export.main(argv) == 0  # the next start
    assert temporaries(tmp_path) == []
    assert torch.jit.load(str(out)) is not None


# -- 5. honest export checks, full and read-only disks -----------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_export_check_fails_on_non_finite_outputs(tmp_path, model_path, monkeypatch, bad):
    monkeypatch.setattr(export, "run_torchscript", lambda file, x: np.full((x.shape[0], 2, x.shape[1]), bad))
    out = tmp_path / "m.pt"
    with pytest.raises(DnnsepError, match="exported model gives NaN or infinite outputs .*; nothing written"):
        export.main(["--format", "torchscript", "--model", str(model_path), "--output", str(out)])
    assert list(tmp_path.iterdir()) == []
    nan = broken_model(tmp_path / "nan.pth", float("nan"))
    with pytest.raises(DnnsepError, match=r"nan\.pth: the model's weights hold NaN"):
        export.main(["--format", "torchscript", "--model", str(nan), "--output", str(out)])


FULL_DISK_EXPORT = """
import sys
from dnnsep import cli
from dnnsep.bin import export
export.free_bytes = lambda folder: 1 << 40  # pretend there is room: the write itself must fail cleanly
cli.run(export.main)
"""


def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, model_path):
    with tmpfs(tmp_path / "disk", "size=200k") as disk:
        fill(disk, leave=16 * 1024)  # the tiny model's TorchScript file is about 65 KiB
        argv = ["--format", "torchscript", "--model", str(model_path), "--output", str(disk / "m.pt")]
        with pytest.raises(DnnsepError, match=r"not enough free space for the .* MiB export"):
            export.main(argv)  # checked before writing
        done = subprocess.run(
            [sys.executable, "-c", FULL_DISK_EXPORT, *argv], env=ENV, capture_output=True, text=True, timeout=60
        )  # fmt: skip
        assert done.returncode == 2, done.stderr  # not an abort (-6) from torch's C++ writer
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        assert errors[-1].startswith("error: ") and "no space left on device" in errors[-1], done.stderr
        assert "Traceback" not in done.stderr and "c10" not in done.stderr
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no export, no temporary


def test_a_checkpoint_saved_onto_a_full_disk_is_an_os_error_naming_it(tmp_path):
    model = DPRNNTasNet(DPRNNConfig(n_filters=64, kernel_size=4, hidden=64, chunk_size=10, hop_size=5, n_blocks=2))
    with tmpfs(tmp_path / "disk", "size=200k") as disk:  # the checkpoint is about 500 KiB
        with pytest.raises(OSError) as err:
            model.save(disk / "best.pth")
        assert err.value.errno == errno.ENOSPC and err.value.filename == str(disk / "best.pth")
        assert "best.pth: no space left on device" in one_line(cli.os_error(err.value))
        assert list(disk.iterdir()) == []  # no temporary left


def test_export_and_separate_onto_a_read_only_disk_are_one_line(tmp_path, model_path):
    wav(tmp_path / "a.wav")
    with tmpfs(tmp_path / "ro", "ro,size=64k") as disk:
        with pytest.raises(DnnsepError) as err:
            export.main(["--format", "torchscript", "--model", str(model_path), "--output", str(disk / "m.pt")])
        assert one_line(err.value) == f"{disk}: read-only file system; choose another --output"
        with pytest.raises(DnnsepError) as err:
            separate.main([str(tmp_path / "a.wav"), "--model", str(model_path), "--out_dir", str(disk / "sep")])
        assert "read-only file system" in one_line(err.value) and str(disk / "sep") in str(err.value)
        with pytest.raises(DnnsepError) as err:
            prepare.main([str(disk / "data"), "2", "--librispeech_root", str(tmp_path)])
        assert "read-only file system" in one_line(err.value)


# -- 6. the name the user typed ----------------------------------------------------------------------


@pytest.mark.parametrize("tool", [separate, export, evaluate, prepare], ids=lambda m: m.__name__.split(".")[-1])
def test_prog_is_the_shell_fronts_name_and_help_hides_recipe_dir(tool, monkeypatch):
    name = tool.__name__.split(".")[-1]
    monkeypatch.delenv(cli.PROG_VARIABLE, raising=False)
    assert tool.get_parser().prog == f"python -m dnnsep.bin.{name}"
    monkeypatch.setenv(cli.PROG_VARIABLE, f"{name}.sh")
    parser = tool.get_parser()
    assert parser.prog == f"{name}.sh" and parser.format_usage().startswith(f"usage: {name}.sh ")
    assert "recipe_dir" not in parser.format_help()


# -- 7. one-line errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool, args, message",
    [
        (separate, ["--chunk_seconds", "nan"], r"--chunk_seconds must be a finite number .* got nan"),
        (separate, ["--chunk_seconds", "inf"], r"--chunk_seconds must be a finite number .* got inf"),
        (separate, ["--chunk_seconds", "0.001"], r"--chunk_seconds must be .* or 0, got 0\.001"),
        (separate, ["--overlap", "nan"], r"--overlap must be a finite number in \(0, 0\.5\], got nan"),
        (separate, ["--overlap", "1e-9"], r"--overlap 1e-09 of a 8\.0 s chunk is less than one sample"),
        (export, ["--format", "torchscript", "--seconds", "nan"], r"--seconds must be a finite number"),
        (export, ["--format", "torchscript", "--seconds", "inf"], r"--seconds must be a finite number"),
        (export, ["--format", "torchscript", "--tolerance", "nan"], r"--tolerance must be a finite number"),
        (prepare, ["2", "--segment", "nan"], r"--segment must be a finite number"),
        (prepare, ["2", "--segment", "inf"], r"--segment must be a finite number"),
        (prepare, ["2", "--gain_db=-inf"], r"--gain_db must be a finite number"),
        (prepare, ["2", "--level_dbfs", "nan"], r"--level_dbfs must be a finite number"),
        (prepare, ["2", "--seed", "-1"], r"--seed and --retries must be >= 0"),
        (evaluate, ["--n_examples", "-1"], r"--n_examples must be >= 0"),
    ],
)
def test_bad_option_values_are_one_line_errors(tool, args, message, tmp_path, model_path):
    wav(tmp_path / "a.wav")
    if tool is separate:
        argv = [str(tmp_path / "a.wav"), "--model", str(model_path), "--out_dir", str(tmp_path / "o"), *args]
    elif tool is export:
        argv = [*args, "--model", str(model_path), "--output", str(tmp_path / "m.pt")]
    elif tool is prepare:
        argv = [str(tmp_path / "data"), *args, "--librispeech_root", str(tmp_path)]
    else:
        argv = [str(model_path), *args]
    with pytest.raises(DnnsepError, match=message) as err:
        tool.main(argv)
    one_line(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # refused before writing anything


def test_eval_segment_nan_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        prepare.main([str(tmp_path / "d"), "2", "--eval_segment", "nan"])
    assert exit_.value.code == 2
    assert "--eval_segment: must be a finite number of seconds > 0 or 'full', got nan" in capsys.readouterr().err


def test_files_where_folders_go_and_folders_where_files_go(tmp_path, model_path):
    wav(tmp_path / "a.wav")
    (tmp_path / "file").write_text("a file")
    cases = [
        (separate, [str(tmp_path / "a.wav"), "--model", str(model_path), "--out_dir", str(tmp_path / "file")]),
        (separate, [str(tmp_path / "a.wav"), "--model", str(model_path), "--out_dir", str(tmp_path / "file" / "x")]),
        (export, ["--format", "torchscript", "--model", str(model_path), "--output", str(tmp_path / "file" / "m")]),
        (export, ["--format", "torchscript", "--model", str(model_path), "--output", str(tmp_path)]),
        (export, ["--format", "torchscript", "--model", str(tmp_path)]),
        (evaluate, [str(tmp_path)]),
        (prepare, [str(tmp_path / "file"), "2", "--librispeech_root", str(tmp_path)]),
        (prepare, [str(tmp_path / "d"), "2", "--librispeech_root", str(tmp_path / "file")]),
    ]
    for tool, argv in cases:
        with pytest.raises(DnnsepError) as err:
            tool.main(argv)
        text = one_line(err.value)
        assert "is a file, not a directory" in text or "is a directory" in text or "no such" in text, text
    # an output folder of separate taken by a file, inside the output directory
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_text("in the way")
    with pytest.raises(DnnsepError, match=r"out/a: is a file, where the outputs of an input go"):
        separate.main([str(tmp_path / "a.wav"), "--model", str(model_path), "--out_dir", str(tmp_path / "out")])


@pytest.mark.parametrize(
    "content, message",
    [
        ({"n_sources": 2, "mixtures": [{"id": "m", "sources": [{}, {}]}]}, r"malformed mixture list \(missing key"),
        ({"n_sources": 2, "sample_rate": 16000, "mixtures": 7}, r"malformed mixture list"),
        ({"n_sources": 2, "mixtures": [{"id": "m" + ESC + "[2J", "sources": [1]}]}, r"has 1 sources, expected 2"),
    ],
    ids=["missing-keys", "mixtures-not-a-list", "escape-codes-in-id"],
)
def test_evaluate_malformed_list_is_one_line(tmp_path, model_path, content, message, capsys):
    lst = tmp_path / "data" / "2mix" / "test.json"
    lst.parent.mkdir(parents=True)
    lst.write_text(json.dumps({"format": FORMAT, "version": VERSION, **content}))
    with pytest.raises(SystemExit) as exit_:
        cli.run(lambda argv: evaluate.main([str(model_path), "--dataset_dir", str(tmp_path / "data")]))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and ESC not in err, err
    assert err.startswith(f"error: {lst}: ") and re.search(message, err), err


@pytest.mark.parametrize(
    "url, message",
    [
        ("", "not a URL"),
        ("ftp://example.org/x", r"needs an http://, https:// or file:// address"),
        ("example.org/LibriSpeech", r"needs an http://, https:// or file:// address"),
        ("http://", "no host name"),
        ("http://host:99999/x", "malformed port"),
        ("http://host/a b", "not a URL"),
        ("http://host/x\x1b[2J", "not a URL"),
        ("file:///no/such/folder", "is not a folder"),
    ],
)
def test_prepare_bad_mirror_is_one_line(tmp_path, url, message):
    with pytest.raises(DnnsepError, match=message) as err:
        prepare.main([str(tmp_path / "data"), "2", "--mirror", url, "--no_progress"])
    one_line(err.value)
    assert not (tmp_path / "data").exists()


class _WrongOffset(BaseHTTPRequestHandler):
    """Answers any Range request with a 206 from byte 0 (a broken cache or proxy)."""

    protocol_version = "HTTP/1.1"
    body = bytes(range(256)) * 40

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(206 if self.headers.get("Range") else 200)
        if self.headers.get("Range"):
            self.send_header("Content-Range", f"bytes 0-{len(self.body) - 1}/{len(self.body)}")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def test_download_resumed_at_the_wrong_offset_says_delete_the_partial_file(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WrongOffset)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        part = tmp_path / "x.tar.gz.part"
        part.write_bytes(_WrongOffset.body[:1000])
        url = f"http://127.0.0.1:{server.server_address[1]}/x.tar.gz"
        with pytest.raises(DnnsepError) as err:
            download_module.download(url, tmp_path / "x.tar.gz", retries=0, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    text = one_line(err.value)
    assert "resume at byte 1000 with bytes from 0" in text and f"delete the partial file {part}" in text
    assert part.read_bytes() == _WrongOffset.body[:1000]  # not appended to: the file is not corrupted
    assert not (tmp_path / "x.tar.gz").exists()


def test_cli_run_prints_one_line_without_escape_codes(capsys):
    def fails(argv):
        raise DnnsepError(f"bad{ESC}[2J name{ESC}]0;title\x07")

    with pytest.raises(SystemExit) as exit_:
        cli.run(fails)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: bad?[2J name?]0;title?\n"

    def disk_full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/some/file")

    with pytest.raises(SystemExit):
        cli.run(disk_full)
    err = capsys.readouterr().err
    assert err.startswith("error: /some/file: no space left on device") and err.count("\n") == 1


def test_separate_does_not_echo_escape_codes_from_file_names(tmp_path, model_path, capsys):
    wav(tmp_path / "in" / "good.wav")
    (tmp_path / "in" / f"bad{ESC}]0;pwned\x07.wav").write_bytes(b"RIFFjunk")
    assert separate.main([str(tmp_path / "in"), "--model", str(model_path), "--out_dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "bad?]0;pwned?.wav: " in err and ESC not in err and "\x07" not in err


# -- 8. one writer per folder -------------------------------------------------------------------------

HOLDER = """
import sys
from dnnsep.locking import hold
with hold(sys.argv[1], what="dataset folder"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_lock_refuses_a_second_process_naming_the_first(tmp_path, capsys):
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "--some-option"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV, text=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(DnnsepError) as err:
            with locking.hold(tmp_path):
                pass
        text = one_line(err.value)
        assert f"experiment in use by pid {child.pid} on {locking.hostname()}" in text
        assert "--some-option" in text and ", since 20" in text
        with pytest.raises(DnnsepError, match=f"dataset folder in use by pid {child.pid}"):
            prepare.main([str(tmp_path), "2", "--librispeech_root", str(tmp_path / "nowhere"), "--no_progress"])
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    with locking.hold(tmp_path) as lock:  # released: free again, with nothing to report
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "note" not in capsys.readouterr().err


def test_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, capsys):
    pid = dead_pid()
    record = {"pid": pid, "host": locking.hostname(), "command": f"train {ESC}[31mred", "since": "2024-01-02 03:04:05"}
    (tmp_path / ".lock").write_text(json.dumps(record))
    with locking.hold(tmp_path, what="experiment"):
        err = capsys.readouterr().err
    assert f"taking over the lock left by pid {pid}" in err and "since 2024-01-02 03:04:05" in err
    assert ESC not in err


ORPHANING_HOLDER = """
import os, sys, time
from dnnsep.locking import hold
lock = hold(sys.argv[1])  # kept referenced: collecting it would release the lock
lock.__enter__()
child = os.fork()
if child:  # the recorded holder exits; its forked child keeps the locked descriptor
    print(child, flush=True)
    os._exit(0)
time.sleep(30)
"""


def test_lock_held_only_by_an_orphaned_child_of_a_dead_holder_is_broken(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", ORPHANING_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, env=ENV)
    orphan = int(holder.stdout.readline())
    holder.wait(timeout=10)
    try:
        with locking.hold(tmp_path) as lock:
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "breaking the lock" in err
    finally:
        os.kill(orphan, signal.SIGKILL)


# -- 9. hostile checkpoints ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [DPRNNTasNet, ConvTasNet], ids=["dprnn", "conv_tasnet"])
def test_a_config_asking_for_a_huge_model_is_refused_without_allocating(tmp_path, cls):
    with torch.device("meta"):
        tiny = cls(cls.config_class(n_filters=16, kernel_size=4, hidden=16))
    ckpt = {
        "model_name": cls.model_name,
        "model_args": {**tiny.config.to_dict(), "n_filters": 10**7, "hidden": 10**4},  # an LSTM of 1.6 TB
        "state_dict": {k: torch.zeros(v.shape) for k, v in tiny.state_dict().items()},
    }
    torch.save(ckpt, tmp_path / "huge.pth")
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"huge\.pth: weights do not match its config") as err:
        load_model(tmp_path / "huge.pth")
    assert time.perf_counter() - start < 1.0
    one_line(err.value)


class Payload:
    """Unpickling this would create a file: proof that code from the checkpoint ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_with_pickled_objects_is_refused_with_torchs_warning(tmp_path, model_path, capsys):
    marker = tmp_path / "code-ran"
    ckpt = {**DPRNNTasNet(DPRNNConfig(**TINY)).checkpoint(), "extra": Payload(str(marker))}
    torch.save(ckpt, tmp_path / "evil.pth")
    wav(tmp_path / "a.wav")
    with pytest.raises(SystemExit):
        cli.run(lambda argv: separate.main([str(tmp_path / "a.wav"), "--model", str(tmp_path / "evil.pth")]))
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.startswith(
        f"error: {tmp_path / 'evil.pth'}: not a readable dnnsep checkpoint: it holds pickled Python objects"
    )
    assert "(Unsupported global: GLOBAL getattr)" in err  # names what it holds (Path.touch is pickled via getattr)
    assert "arbitrary code execution" in err and "trusted source" in err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err
    assert err.count("\n") == 1 and ESC not in err


def test_escape_codes_in_model_name_are_not_echoed(tmp_path, capsys):
    ckpt = {**DPRNNTasNet(DPRNNConfig(**TINY)).checkpoint(), "model_name": f"{ESC}[2J{ESC}]0;pwned\x07Evil"}
    torch.save(ckpt, tmp_path / "m.pth")
    wav(tmp_path / "a.wav")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "m.pth")
    one_line(err.value)
    with pytest.raises(SystemExit):
        cli.run(lambda argv: export.main(["--format", "torchscript", "--model", str(tmp_path / "m.pth")]))
    err = capsys.readouterr().err
    assert "unknown model" in err and ESC not in err and "\x07" not in err


def test_stale_temporaries_of_other_hosts_wait_for_their_age(tmp_path):
    """A writer on another host cannot be asked whether it lives: only an old temporary of it is removed."""
    other_host = "00000000" if locking.host_tag() != "00000000" else "11111111"
    other = tmp_path / f".best.pth.{other_host}-{dead_pid()}-abcdef12.tmp"
    other.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, quiet=True) == []
    os.utime(other, (time.time() - STALE_AGE_S - 1,) * 2)
    assert remove_stale_temporaries(tmp_path, quiet=True) == [other]
