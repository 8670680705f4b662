"""Test helpers: a tiny synthetic LibriSpeech, its mirror (tarballs + md5sum.txt), and a loopback HTTP
server for that mirror that honours Range requests, can drop a connection halfway once, and can
serve a corrupted archive.

``tests/`` is on ``sys.path`` under pytest, so test modules ``import corpus``.
"""

from __future__ import annotations

import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dnnsep.data.synthetic import make_corpus, make_mirror

TINY = dict(n_speakers=6, utts_per_speaker=3, seconds=(1.2, 2.5), seed=0)
SEGMENT = ["--segment", "1", "--eval_segment", "1"]  # tiny utterances: 1-s mixtures

_cache: dict[str, Path] = {}


def tiny_corpus(tmp_path_factory) -> Path:
    """The folder holding a tiny ``LibriSpeech/`` (what ``--librispeech_root`` accepts), built once per
    session, with its mirror (archives + md5sum.txt) in the sibling folder ``mirror``.

    Test modules wrap it in a session fixture::

        @pytest.fixture(scope="session")
        def corpus_root(tmp_path_factory):
            return tiny_corpus(tmp_path_factory)
    """
    if "root" not in _cache:
        base = tmp_path_factory.getbasetemp() / "tiny"
        make_corpus(base / "corpus", **TINY)
        make_mirror(base / "corpus", base / "mirror")
        _cache["root"] = base / "corpus"
    return _cache["root"]


def serve_mirror(corpus_root: Path, tmp_path: Path) -> MirrorServer:
    """A :class:`MirrorServer` (use as a context manager) over a private copy of the mirror folder."""
    served = tmp_path / "served"
    shutil.copytree(corpus_root.parent / "mirror", served)
    return MirrorServer(served)


class MirrorServer:
    """Serve ``directory`` on ``http://127.0.0.1:<free port>``.

    - ``drop_once[name] = n``: the next response for ``name`` stops after byte ``n`` of the file and
      the connection is closed (as a flaky network would).
    - ``corrupt``: names served with one byte flipped in the middle.
    - ``log``: ``(name, range header or None, bytes sent)`` per request.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.drop_once: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.log: list[tuple[str, str | None, int]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> MirrorServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests_for(self, name: str) -> list[tuple[str, str | None, int]]:
        return [entry for entry in self.log if entry[0] == name]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                path = server.directory / name
                if "/" in name or not path.is_file():
                    self.send_error(404)
                    return
                data = bytearray(path.read_bytes())
                if name in server.corrupt:
                    data[len(data) // 2] ^= 0xFF
                header = self.headers.get("Range")
                start = int(header.split("=")[1].split("-")[0]) if header else 0
                if start >= len(data) and header:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    server.log.append((name, header, 0))  # logged before the client can see the reply
                    self.end_headers()
                    return
                body = bytes(data[start:])
                self.send_response(206 if header else 200)
                if header:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                drop = server.drop_once.pop(name, None)
                if drop is not None:
                    body = body[: max(0, drop - start)]
                # logged before the client can see the reply, so a test that clears the log after a
                # download never races with a late entry
                server.log.append((name, header, len(body)))
                self.end_headers()
                self.wfile.write(body)
                if drop is not None:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

        return Handler
