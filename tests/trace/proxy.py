"""A recording HTTP proxy for tests: forwards to a CouchDB-API server and keeps every request's headers.

``answer(method, path)`` may return ``(status, json_body)`` to answer a request itself instead of
forwarding it: a fault (a 503) or a broken answer injected between a real client and a real server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
import urllib3

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


Answer = Callable[[str, str], "tuple[int, Any] | None"]


class RecordingProxy:
    def __init__(self, upstream: str, answer: Answer | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.answer = answer
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection; the body ends at close

            def log_message(self, *args: Any) -> None:
                return None

            def _forward(self) -> None:
                proxy.seen.append((self.command, self.path, dict(self.headers.items())))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                injected = proxy.answer(self.command, self.path) if proxy.answer else None
                if injected is not None:
                    data = json.dumps(injected[1]).encode()
                    self.send_response(injected[0])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP | {"host"}}
                with requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    headers=headers,
                    data=body,
                    stream=True,
                    timeout=(5, 120),
                ) as resp:
                    self.send_response(resp.status_code)
                    for key, value in resp.headers.items():
                        if key.lower() not in HOP:
                            self.send_header(key, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        for chunk in resp.raw.stream(1024, decode_content=False):
                            self.wfile.write(chunk)
                            self.wfile.flush()
                    except (OSError, requests.RequestException, urllib3.exceptions.HTTPError):
                        pass

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def __enter__(self) -> RecordingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
