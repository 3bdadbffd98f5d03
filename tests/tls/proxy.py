"""A TLS-terminating proxy on loopback: what a CouchDB or Redis behind stunnel/nginx looks like.

It listens on a free 127.0.0.1 port, requires a client certificate signed by ``ca`` (mutual TLS),
and forwards the decrypted bytes to a plain server on ``127.0.0.1:backend_port``. One thread per
connection moves bytes both ways, so a single thread ever touches an ``SSLSocket`` (OpenSSL objects
are not safe for a concurrent read and write). Every socket is closed by the thread that owns it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from pathlib import Path

IO_TIMEOUT = 5.0
TICK = 0.2  #: how often idle threads look at the stop flag


class TLSProxy:
    """TLS on ``port`` in front of ``127.0.0.1:backend_port``; ``refused`` lists failed handshakes."""

    def __init__(self, backend_port: int, cert: Path, key: Path, ca: Path) -> None:
        self.backend_port = backend_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.load_verify_locations(ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.refused: list[str] = []
        self.port = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None

    def start(self) -> TLSProxy:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TICK)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=IO_TIMEOUT + 1)
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> TLSProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT)
        try:
            with self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False) as tls:
                try:
                    tls.do_handshake()
                except (ssl.SSLError, OSError) as exc:
                    self.refused.append(getattr(exc, "reason", None) or type(exc).__name__)
                    _linger(tls)
                    return
                with socket.create_connection(("127.0.0.1", self.backend_port), IO_TIMEOUT) as backend:
                    self._pump(tls, backend)
        except OSError:
            pass  # a peer went away mid-stream: the other side sees its socket close
        finally:
            conn.close()

    def _pump(self, tls: ssl.SSLSocket, backend: socket.socket) -> None:
        """Copy bytes both ways until either side closes (or the proxy stops)."""
        while not self._stop.is_set():
            # Bytes OpenSSL already decrypted are invisible to select: serve them first.
            ready = [tls] if tls.pending() else select.select([tls, backend], [], [], TICK)[0]
            for src in ready:
                dst = backend if src is tls else tls
                try:
                    data = src.recv(65536)
                except (TimeoutError, ssl.SSLWantReadError):
                    continue  # a TLS record not complete yet, or one without application data
                if not data:
                    return
                dst.sendall(data)


def _linger(tls: ssl.SSLSocket) -> None:
    """After a refused handshake, send FIN and read what the client already sent before closing.

    Closing with unread bytes makes the kernel send a reset, which can overtake the TLS alert
    (``certificate required``) on its way to the client, which would then see only "connection reset".
    """
    with contextlib.suppress(OSError):
        tls.shutdown(socket.SHUT_WR)
        tls.settimeout(1.0)
        while tls.recv(65536):
            pass
