"""Recorded CouchDB 3.4.3 answers served through a scripted session or a stub HTTP server.

Only for what pouchdb-server cannot show (``_scheduler/*``); everything else runs on real servers.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from couchfarm.breaker import RetryPolicy
from couchfarm.couch import CouchClient

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "couchdb"
Answer = tuple[int, Any]
Routes = dict[tuple[str, str], list[Answer]]
NO_SCHEDULER: Answer = (404, {"error": "not_found", "reason": "no_db_file"})  # pouchdb-server's answer


def exchange(name: str, index: int) -> dict[str, Any]:
    """One recorded exchange, deep-copied so a test may edit it."""
    (path,) = FIXTURES.glob(f"{name}_*.json")
    return copy.deepcopy(json.loads(path.read_text())["exchanges"][index])


def body(name: str, index: int, **changes: Any) -> Any:
    """A recorded response body; ``changes`` override top-level members (a composed timeline)."""
    out = exchange(name, index)["response"]["body"]
    out.update(changes)
    return out


def listing(*entries: dict[str, Any], key: str = "docs") -> dict[str, Any]:
    """A ``_scheduler/docs`` (or ``jobs``) page made of recorded entries."""
    return {"total_rows": len(entries), "offset": 0, key: list(entries)}


def all_docs(*docs: dict[str, Any]) -> dict[str, Any]:
    rows = [{"id": d["_id"], "key": d["_id"], "value": {"rev": d.get("_rev", "1-x")}, "doc": d} for d in docs]
    return {"total_rows": len(rows), "offset": 0, "rows": rows}


class ScriptedSession(requests.Session):
    """Answers ``(method, path)`` from a list, one answer per call; the last answer repeats."""

    def __init__(self, routes: Routes) -> None:
        super().__init__()
        self.routes = {k: list(v) for k, v in routes.items()}
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, str, Any]] = []  #: (method, path, JSON body) of requests with one

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        method, path = str(method), urlsplit(str(url)).path
        self.calls.append((method, path))
        if kwargs.get("data"):
            self.bodies.append((method, path, json.loads(kwargs["data"])))
        answers = self.routes.get((method, path), [(404, {"error": "not_found", "reason": "missing"})])
        status, payload = answers.pop(0) if len(answers) > 1 else answers[0]
        resp = requests.Response()
        resp.status_code, resp.url = status, str(url)
        resp._content = json.dumps(payload).encode()
        resp.headers["Content-Type"] = "application/json"
        return resp


def fake_client(routes: Routes, url: str = "http://127.0.0.1:25984") -> tuple[CouchClient, ScriptedSession]:
    session = ScriptedSession(routes)
    return CouchClient(url, session=session, retry=RetryPolicy(1)), session


class StubServer:
    """A loopback HTTP server answering scripted routes (like ``ScriptedSession``), recording bodies."""

    def __init__(self, routes: Routes) -> None:
        self.routes = {k: list(v) for k, v in routes.items()}
        self.received: list[tuple[str, str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                stub.received.append((self.command, path, json.loads(raw) if raw else None))
                answers = stub.routes.get((self.command, path), [(404, {"error": "not_found"})])
                status, payload = answers.pop(0) if len(answers) > 1 else answers[0]
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[StubServer]:
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)
