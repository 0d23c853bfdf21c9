"""Fixtures shared by the tests/test_data_*.py files (imported by them, not auto-loaded)."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("ACTSCAN_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private digest / download cache for every test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ACTSCAN_CACHE", str(cache))
    return cache


def leftovers(root: str | Path) -> list[str]:
    """Temporary or partial files left under ``root`` (must be none after any failure)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [*dirnames, *filenames]:
            if ".tmp-" in n or ".part" in n or ".old-" in n:
                out.append(os.path.join(dirpath, n))
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; counts GET requests per path instead of logging them."""

    requests: dict[str, int]

    def do_GET(self) -> None:
        self.requests[self.path] = self.requests.get(self.path, 0) + 1
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class LocalServer:
    """An HTTP server on 127.0.0.1 serving ``folder`` (a context manager): ``url(name)``,
    ``requests`` (GET requests per path). Clear the ``*_proxy`` variables before using it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: dict[str, int] = {}
        handler = functools.partial(
            type("Handler", (_QuietHandler,), {"requests": self.requests}), directory=str(folder)
        )
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        """URL of ``<folder>/<name>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def close(self) -> None:
        """Stop serving; the port is closed afterwards."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_port_url(name: str) -> str:
    """A URL on 127.0.0.1 whose port nothing listens on: connecting fails at once (offline)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"
