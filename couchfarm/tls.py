"""TLS for every connection couchfarm makes: CouchDB servers (farm and control plane) and Redis.

A ``TLSFiles`` holds one connection kind's CA bundle, client certificate and key, the ``verify``
switch, and what the operator calls each (``couch_cert_file``, ``nodes.edge1.tls.cert``) so that
errors name the thing to fix. Files are read when settings or topologies load and again when a
client is built: a bad file fails at start, before any connection. requests and redis-py re-read
them per connection, so replacing the files rotates certificates without a restart.

A handshake failure no retry can fix (no client certificate, an untrusted CA, a name mismatch)
raises ``TLSError``, a ``ConfigError`` that says so in words, instead of a retried ``Unavailable``
carrying OpenSSL's reason code. Messages quote paths, never file contents: no key reaches a log.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from couchfarm.errors import ConfigError
from couchfarm.redact import strip_userinfo

log = logging.getLogger("couchfarm.tls")
TLS_SCHEMES = ("https", "rediss")
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


class TLSError(ConfigError):
    """Raised when a TLS handshake fails for a reason retrying cannot fix; ``source`` is the server."""


class _EncryptedKey(Exception):
    """The key file asked for a password (couchfarm has no setting for one)."""


@dataclass(frozen=True)
class TLSFiles:
    """One connection kind's CA bundle, client certificate and key, and whether to verify the server."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True
    names: tuple[str, str, str, str] = ("ca", "cert", "key", "verify")  #: what the operator calls each

    @classmethod
    def for_settings(
        cls,
        prefix: str,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        verify: bool = True,
    ) -> TLSFiles:
        """Files named by settings ``{prefix}_ca_file``, ``_cert_file``, ``_key_file``, ``_verify``."""
        names = (f"{prefix}_ca_file", f"{prefix}_cert_file", f"{prefix}_key_file", f"{prefix}_verify")
        return cls(ca, cert, key, verify, names)

    def check(self) -> TLSFiles:
        """Read every file now; a ``ConfigError`` names the setting and the path of the first bad one."""
        ca, cert, key, _ = self.names
        for name, path, problem in (
            (ca, self.ca, self.ca and ca_problem(self.ca)),
            (cert, self.cert, self.cert and file_problem(self.cert)),
            (key, self.key, pair_problem(self.cert, self.key, cert)),
        ):
            if problem:
                raise ConfigError(f"{name}: {problem}", field=name, source=path or self.cert or "")
        return self

    def requests_verify(self) -> bool | str:
        """``verify=`` for requests: False, the CA bundle, or True (the system's CAs)."""
        return False if not self.verify else self.ca or True

    def requests_cert(self) -> str | tuple[str, str] | None:
        """``cert=`` for requests: the certificate, with its key when that is a separate file."""
        if self.cert is None:
            return None
        return (self.cert, self.key) if self.key else self.cert

    def redis_options(self, celery: bool = False) -> dict[str, Any]:
        """``ssl_*`` arguments for redis-py's ``from_url``, or (``celery``) for ``broker_use_ssl`` and
        ``redis_backend_use_ssl``, where Celery wants the ``ssl.CERT_*`` constants."""
        reqs = (ssl.CERT_REQUIRED, ssl.CERT_NONE) if celery else ("required", "none")
        return {
            "ssl_cert_reqs": reqs[0] if self.verify else reqs[1],
            "ssl_ca_certs": self.ca,
            "ssl_certfile": self.cert,
            "ssl_keyfile": self.key,
        }

    def prepare(self, url: str) -> TLSFiles:
        """Check the files and log the start-up warnings, once per process, for a client of ``url``."""
        self.check()
        server = strip_userinfo(url)[0]
        secure = server.split("://", 1)[0].lower() in TLS_SCHEMES
        if secure and not self.verify:
            why = "is not checked, so anyone on the network path can pose as the server"
            _warn_once(self.names[3], server, f"{self.names[3]} is off: the certificate of {server} {why}")
        elif not secure and (self.ca or self.cert):
            why = "is not a TLS URL: the connection is not encrypted"
            _warn_once(self.names[0], server, f"{self.names[0]}/{self.names[1]} are set but {server} {why}")
        return self


def _warn_once(name: str, server: str, message: str) -> None:
    with _warned_lock:
        if (name, server) in _warned:
            return
        _warned.add((name, server))
    log.warning(message, extra={"setting": name, "server": server})


class TLSSpec(BaseModel):
    """A ``tls:`` mapping in a topology node: ``{ca: ..., cert: ..., key: ..., verify: true}``."""

    model_config = ConfigDict(extra="forbid")
    ca: StrictStr | None = None
    cert: StrictStr | None = None
    key: StrictStr | None = Field(None, validate_default=True)
    verify: StrictBool = True

    @field_validator("ca", "cert")
    @classmethod
    def _readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        problem = ca_problem if info.field_name == "ca" else file_problem
        return checked(value, problem(value) if value else None)

    @field_validator("key")
    @classmethod
    def _matching_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "cert" not in info.data:  # the certificate failed its own check: reported there
            return value
        return checked(value, pair_problem(info.data["cert"], value, "cert"))

    def files(self, node: str) -> TLSFiles:
        """The files, named as topology keys (``nodes.<node>.tls.cert``) for error messages."""
        at = f"nodes.{node}.tls."
        names = (f"{at}ca", f"{at}cert", f"{at}key", f"{at}verify")
        return TLSFiles(self.ca, self.cert, self.key, self.verify, names)


def checked(value: str | None, problem: str | None) -> str | None:
    """A pydantic error carrying ``problem`` as is, so settings and topologies name field and source."""
    if problem:
        raise PydanticCustomError("tls_file", "{problem}", {"problem": problem})
    return value


# -- file checks: each returns why a file cannot serve, or None --------------------------------------


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as a PEM file (only the path is quoted, never the content)."""
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        return f"{path} is a directory, not a PEM file"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or type(exc).__name__}"
    return None if b"-----BEGIN " in data else f"{path} is not a PEM file"


def ca_problem(path: str) -> str | None:
    """Why ``path`` cannot serve as a CA bundle."""
    problem = file_problem(path)
    if problem is None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
        except ssl.SSLError:
            problem = f"{path} holds no CA certificate"
    return problem


def pair_problem(cert: str | None, key: str | None, cert_name: str) -> str | None:
    """Why ``cert`` and ``key`` cannot serve as a client identity (``key`` None: inside ``cert``)."""
    if cert is None:
        return f"is set but {cert_name} is not: a key needs its certificate" if key else None
    problem = file_problem(key) if key else None
    if problem:
        return problem
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=_refuse_password)
    except _EncryptedKey:
        return f"{key or cert} holds an encrypted key: give couchfarm an unencrypted key file"
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return f"{key} is not the key of the certificate in {cert}"
        if key is None:
            return f"not set, and {cert_name} {cert} holds no private key (or no certificate)"
        return f"{cert} and {key} are not a PEM certificate and its private key"
    return None


def _refuse_password() -> bytes:
    """Without a callback OpenSSL would prompt on the terminal and hang a worker."""
    raise _EncryptedKey


# -- handshake failures -----------------------------------------------------------------------------

SERVER, CLIENT, PORT, NAME = "server", "client", "port", "name"  #: what a failure points at
NAME_MISMATCH = (62, 64)  #: X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
#: OpenSSL reasons that retrying cannot fix: what each means, and whose set-up is to blame.
FINAL_REASONS: dict[str, tuple[str, str]] = {
    "CERTIFICATE_VERIFY_FAILED": ("the server's certificate is not trusted", SERVER),
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": ("certificate required", CLIENT),
    "SSLV3_ALERT_HANDSHAKE_FAILURE": ("the server refused the handshake", CLIENT),
    "TLSV1_ALERT_UNKNOWN_CA": ("the server does not trust our client certificate (unknown CA)", CLIENT),
    "SSLV3_ALERT_BAD_CERTIFICATE": ("the server rejected our client certificate", CLIENT),
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": ("the server rejected our client certificate", CLIENT),
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": ("the server says our client certificate has expired", CLIENT),
    "SSLV3_ALERT_CERTIFICATE_REVOKED": ("the server says our client certificate is revoked", CLIENT),
    "TLSV1_ALERT_ACCESS_DENIED": ("the server denied our client certificate access", CLIENT),
    "WRONG_VERSION_NUMBER": ("the server does not speak TLS on this port", PORT),
    "TLSV1_ALERT_PROTOCOL_VERSION": ("no TLS version in common with the server", PORT),
    "UNSUPPORTED_PROTOCOL": ("no TLS version in common with the server", PORT),
}


def handshake_error(exc: BaseException, url: str, files: TLSFiles) -> TLSError | None:
    """The ``TLSError`` for a failure caused by a final TLS problem, else None (leave it to retries).

    The ``ssl.SSLError`` sits somewhere in the chain that requests, urllib3 or redis-py wrap around it.
    """
    found = _ssl_cause(exc)
    if found is None or found.reason not in FINAL_REASONS:
        return None
    server = strip_userinfo(url)[0]
    what, blame = FINAL_REASONS[str(found.reason)]
    if isinstance(found, ssl.SSLCertVerificationError) and found.verify_message:
        what = f"certificate verify failed: {found.verify_message}"
        blame = NAME if found.verify_code in NAME_MISMATCH else blame
    field, hint = _advice(blame, files)
    return TLSError(
        f"TLS handshake with {server} failed: {what.rstrip('.')}. {hint}.", field=field, source=server
    )


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError):
            return item
        todo.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
    return None


def _advice(blame: str, files: TLSFiles) -> tuple[str, str]:
    """The setting to fix and what to do, in the operator's names for the files."""
    ca, cert, key, verify = files.names
    if blame == SERVER:
        return ca, f"Set {ca} to the CA bundle that signed the server's certificate, or {verify}=false"
    if blame == NAME:
        return "", "Put a host name the server's certificate names into the URL"
    if blame == PORT:
        return "", "Check the URL: its scheme, and that the port is the server's TLS port"
    if files.cert is None:
        return cert, f"The server asks for a client certificate: set {cert} and {key}"
    return cert, f"Set {cert} to a certificate the server accepts, signed by a CA it trusts"


def diagnose(url: str, files: TLSFiles, timeout: float = 2.0) -> TLSError | None:
    """Open one TLS connection to ``url``'s server and let it speak first; its alert, if any.

    A server that refuses our certificate says so in an alert just after the TLS 1.3 handshake, but
    a client that writes first (redis-py, requests) may meet the closed socket before reading the
    alert and report only "EOF occurred in violation of protocol". Reading first gets the alert.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 6379)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not files.verify:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    elif files.ca:
        context.load_verify_locations(files.ca)
    else:
        context.load_default_certs()
    if files.cert:
        context.load_cert_chain(files.cert, files.key)
    try:
        with (
            socket.create_connection((host, port), timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as conn,
        ):
            conn.recv(1)
    except OSError as exc:  # ssl.SSLError and timeouts are OSErrors too
        return handshake_error(exc, url, files)
    return None


def redis_options(url: str, files: TLSFiles) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url(url, ...)``: the TLS files for ``rediss://``."""
    files.prepare(url)
    return files.redis_options() if url.lower().startswith("rediss://") else {}


def check_handshake(ping: Callable[[], object], url: str, files: TLSFiles) -> None:
    """Call ``ping()`` once so that a TLS misconfiguration fails now, in words (``TLSError``).

    Any other failure (Redis down, say) is left to the caller's first real command and its retries.
    """
    try:
        ping()
    except Exception as exc:
        error = handshake_error(exc, url, files)
        if error is None and _ssl_cause(exc) is not None:  # a TLS failure without its reason: ask
            error = diagnose(url, files)
        if error is not None:
            raise error from None
