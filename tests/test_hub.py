"""``hf:OWNER/NAME[@REVISION]`` model references, against a fake Hub on 127.0.0.1 (never the network).

The fake Hub answers huggingface_hub's HEAD and GET of ``/<repo>/resolve/<revision>/<file>`` with the
headers it reads (``X-Repo-Commit``, ``ETag``, ``Content-Length``; ``X-Error-Code`` on a 404).  Each
load runs in a child process: huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` on import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from dnnsep import hub, models
from dnnsep.errors import DnnsepError

PUBLISHED = Path(__file__).parent / "data" / "published"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPOS = {  # repository -> its files
    "dnnsep-tests/dprnn": {"pytorch_model.bin": (PUBLISHED / "dprnn_8k_published" / "pytorch_model.bin").read_bytes()},
    "dnnsep-tests/empty": {"README.md": b"nothing here\n"},
    "dnnsep-tests/sepformer": {  # SpeechBrain's layout: hyperparams.yaml, three checkpoints, a model card
        p.name: p.read_bytes() for p in (PUBLISHED / "sepformer_16k_3src").iterdir() if p.name != "reference.pt"
    },
}
LOAD = """
import json, sys
from dnnsep import pretrained
from dnnsep.errors import DnnsepError
for reference in sys.argv[1:]:
    try:
        model, path = pretrained.load_model(reference, recipe_dir=".", device="cpu")
        print(json.dumps({"path": str(path), "provenance": model.provenance}))
    except DnnsepError as err:
        print(json.dumps({"error": str(err)}))
"""


class FakeHub(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_HEAD(self):
        self.answer(body=False)

    def do_GET(self):
        self.answer(body=True)

    def answer(self, *, body: bool) -> None:
        FakeHub.seen.append(f"{self.command} {self.path}")
        match = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)", self.path)
        files = REPOS.get(match["repo"]) if match else None
        if files is None:
            return self.missing("RepoNotFound", "Repository not found")
        if match["revision"] not in ("main", COMMIT):
            return self.missing("RevisionNotFound", "Invalid rev id")
        if match["file"] not in files:
            return self.missing("EntryNotFound", "Entry not found")
        data = files[match["file"]]
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def missing(self, code: str, message: str) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def fake_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeHub.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def load(tmp_path: Path, endpoint: str, *references: str, offline: bool = False) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    env.update(HF_HUB_OFFLINE="1" if offline else "0", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    done = subprocess.run(
        [sys.executable, "-c", LOAD, *references], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_hub_reference_downloads_once_then_loads_offline_from_the_cache(tmp_path, fake_hub):
    online = load(tmp_path, fake_hub, "hf:dnnsep-tests/dprnn", f"hf:dnnsep-tests/dprnn@{COMMIT}")
    for got in online:
        assert got["provenance"]["format"] == "asteroid 0.7.0", got
        assert got["path"].endswith(f"snapshots/{COMMIT}/pytorch_model.bin")
    assert sum(seen.startswith("GET") for seen in FakeHub.seen) == 1  # the second reference: from the cache
    assert any(seen.startswith("HEAD") for seen in FakeHub.seen)
    ours = models.load(online[0]["path"]).eval()
    ref = torch.load(PUBLISHED / "dprnn_8k_published" / "reference.pt", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(ref["input"]), ref["output"], rtol=0, atol=1e-5)
    FakeHub.seen = []
    offline = load(tmp_path, fake_hub, "hf:dnnsep-tests/dprnn", "hf:dnnsep-tests/other", offline=True)
    assert offline[0]["path"] == online[0]["path"] and FakeHub.seen == []
    assert offline[1] == {"error": "hf:dnnsep-tests/other: not in the local cache, and HF_HUB_OFFLINE is set"}


def test_a_missing_repository_revision_or_file_is_one_line(tmp_path, fake_hub):
    got = load(tmp_path, fake_hub, "hf:dnnsep-tests/nope", "hf:dnnsep-tests/dprnn@v9", "hf:dnnsep-tests/empty")
    assert [g["error"] for g in got] == [
        "hf:dnnsep-tests/nope: no such repository on the Hub (or it is private: log in with hf auth login)",
        "hf:dnnsep-tests/dprnn@v9: the repository has no such revision",
        "hf:dnnsep-tests/empty: the repository holds no model (pytorch_model.bin, or SpeechBrain's hyperparams.yaml)",
    ]


def test_without_huggingface_hub_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if it were not installed
    with pytest.raises(DnnsepError) as err:
        models.load("hf:dnnsep-tests/dprnn")
    assert str(err.value) == (
        "hf:dnnsep-tests/dprnn: loading from the Hugging Face Hub needs huggingface_hub: pip install 'dnnsep[hub]'"
    )
    with pytest.raises(DnnsepError, match=r"^hf:nope: not a Hub reference; expected hf:OWNER/NAME\[@REVISION\]$"):
        models.load("hf:nope")
    assert not hub.is_reference(Path("hf:a/b"))  # a local path is never a reference


def test_separate_runs_speechbrains_sepformer_from_the_hub_then_offline_from_the_cache(tmp_path, fake_hub):
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "talk.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(12000).astype(np.float32), 24000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    env.update(HF_ENDPOINT=fake_hub, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    recipe = Path(__file__).resolve().parents[1] / "egs" / "librispeech" / "sepformer"
    for offline in ("0", "1"):
        FakeHub.seen = []
        out = tmp_path / f"sep{offline}"
        done = subprocess.run(
            ["bash", str(recipe / "separate.sh"), str(wav), "--model", "hf:dnnsep-tests/sepformer",
             "--out_dir", str(out)],
            env={**env, "HF_HUB_OFFLINE": offline}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert "speechbrain SepFormer as dnnsep's SepFormer, 16 kHz, 3 sources; licence: apache-2.0" in done.stderr
        wavs = sorted(p.name for p in (out / "talk").glob("*.wav"))
        assert wavs == ["estimated-0.wav", "estimated-1.wav", "estimated-2.wav", "mixture.wav"]
        estimate, rate = sf.read(out / "talk" / "estimated-0.wav")
        assert rate == 24000 and len(estimate) == 12000  # run at the model's 16 kHz, written at the input's rate
        if offline == "1":
            assert FakeHub.seen == []  # everything from the cache
        else:
            got = {seen.split("/resolve/")[-1] for seen in FakeHub.seen if seen.startswith("GET")}
            assert got == {f"main/{name}" for name in ("hyperparams.yaml", "encoder.ckpt", "masknet.ckpt",
                                                       "decoder.ckpt", "README.md")}  # fmt: skip
