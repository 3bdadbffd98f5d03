"""The HTTP layer under the CouchDB client: one place for retries, the breaker and error mapping.

Transient failures (connection refused or reset, timeouts, 5xx, 429) are retried with exponential
backoff and full jitter, honouring ``Retry-After``; every other 4xx is final at once. After
``breaker.threshold`` consecutive transient failures the breaker opens and requests fail fast with
``CircuitOpen`` until the cool-down ends. Credentials live on the session only; URLs in errors and
logs are stripped of them. A TLS handshake that fails on a certificate problem is final at once: a
``couchfarm.tls.TLSError`` that says what to set, not a retried ``Unavailable``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning

from couchfarm.breaker import CircuitBreaker, RetryPolicy
from couchfarm.errors import CircuitOpen, CouchError, Unavailable, error_for_status
from couchfarm.redact import redact, register_secret, strip_userinfo
from couchfarm.tls import TLSFiles, handshake_error

log = logging.getLogger("couchfarm.http")

# identity: CouchDB does not compress its answers, and a server that does (pouchdb-server) spends
# CPU compressing what crosses a local network uncompressed faster (the benchmark showed it).
JSON_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "Accept-Encoding": "identity",
}
Timeout = tuple[float, float]
Hook = Callable[[str, str, int | None, float], None]


def quote_id(doc_id: str) -> str:
    """A document id as one path segment; ``_design/`` and ``_local/`` keep their slash."""
    for prefix in ("_design/", "_local/"):
        if doc_id.startswith(prefix):
            return prefix + quote(doc_id[len(prefix) :], safe="")
    return quote(doc_id, safe="")


def encode_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Query parameters as CouchDB expects them: booleans lowercase, lists/dicts as JSON, strings raw."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        else:
            out[key] = json.dumps(value, separators=(",", ":"))
    return out


def make_session(
    pool_size: int = 10,
    user: str | None = None,
    password: str | None = None,
    verify: bool | str = True,
    cert: str | tuple[str, str] | None = None,
) -> requests.Session:
    """A pooled session with JSON headers (the default for every CouchDB client).

    ``verify`` is True (system CAs), a CA bundle path, or False; ``cert`` a client certificate
    (mutual TLS), with its key file as a pair when the key is separate.
    """
    session = requests.Session()
    adapter = TLSAdapter(verify, pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(JSON_HEADERS)
    if user is not None:
        register_secret(password)
        session.auth = (user, password or "")
    session.verify = verify
    if verify is False:
        # Turning verification off is logged once at start (couchfarm.tls); urllib3 would instead
        # warn on every request, burying the logs.
        warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    if cert is not None:
        session.cert = cert
    return session


class TLSAdapter(HTTPAdapter):
    """An adapter that keeps the session's ``verify`` when it is a CA bundle or False.

    requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace a session's ``verify`` on every
    request (psf/requests#3829), which would silently swap ``couch_ca_file`` for the system bundle.
    ``True`` is left alone, so those variables still work when no CA file is configured.
    """

    def __init__(self, verify: bool | str = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pinned_verify = verify

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if (request.url or "").startswith("http://"):
            kwargs["verify"] = True  # nothing to verify; a CA path here costs a stat() per request
        elif self.pinned_verify is not True:
            kwargs["verify"] = self.pinned_verify
        return super().send(request, *args, **kwargs)


class Transport:
    """Sends requests to one CouchDB server with retries, a breaker and typed errors."""

    def __init__(
        self,
        url: str,
        *,
        session: requests.Session | None = None,
        timeout: Timeout = (3.05, 65.0),
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_request: Hook | None = None,
        headers: Callable[[], Mapping[str, str]] | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        base, user, password = strip_userinfo(url.rstrip("/"))
        self.base = base
        self.session = session if session is not None else make_session()
        if user is not None and self.session.auth is None:
            self.session.auth = (user, password or "")
        self.session.headers.update({k: v for k, v in JSON_HEADERS.items() if k not in self.session.headers})
        if isinstance(self.session.auth, tuple):
            register_secret(str(self.session.auth[1]))
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.sleep = sleep
        self._on_request = on_request
        self._extra_headers = headers
        #: only names the settings in handshake errors; the files themselves are on the session
        self.tls = tls or TLSFiles.for_settings("couch")

    def __repr__(self) -> str:
        return f"Transport({self.base!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        stream: bool = False,
        timeout: Timeout | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> requests.Response:
        """Send one request; retry transient failures; raise the typed error for a final status."""
        url = f"{self.base}/{path.lstrip('/')}"
        data = None if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        hdrs = dict(self._extra_headers() if self._extra_headers else {})
        hdrs.update(headers or {})
        attempts = self.retry.attempts if retry else 1
        last: CouchError | None = None
        last_retry_after: float | None = None
        for attempt in range(attempts):
            if attempt:
                wait = self.retry.delay(attempt - 1, last_retry_after)
                log.debug("retrying %s %s in %.2fs after %s", method, redact(url), wait, last)
                self.sleep(wait)
            if not self.breaker.allow():
                raise CircuitOpen(
                    f"circuit open for {self.base}: {method} {path} not sent "
                    f"(retry in {self.breaker.retry_in():.1f}s)",
                    method=method,
                    url=url,
                )
            started = time.monotonic()
            try:
                resp = self.session.request(
                    method,
                    url,
                    params=encode_params(params),
                    data=data.encode() if data is not None else None,
                    stream=stream,
                    timeout=timeout or self.timeout,
                    headers=hdrs,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                tls_error = handshake_error(exc, self.base, self.tls)
                if tls_error is not None:  # final: a certificate problem does not heal by retrying
                    self.breaker.success()  # the server answered the handshake
                    self._report(method, path, None, started)
                    raise tls_error from None
                self.breaker.failure()
                self._report(method, path, None, started)
                last_retry_after = None
                last = Unavailable(
                    f"{method} {redact(url)} failed: {type(exc).__name__}: {redact(str(exc))[:300]}",
                    method=method,
                    url=redact(url),
                )
                continue
            self._report(method, path, resp.status_code, started)
            if resp.status_code < 400:
                self.breaker.success()
                return resp
            retry_after = resp.headers.get("Retry-After", "").strip()
            error = self._error(method, url, resp)
            if not isinstance(error, Unavailable):
                self.breaker.success()  # the server is up and answering; the request was wrong
                raise error
            self.breaker.failure()
            last = error
            last_retry_after = float(retry_after) if retry_after.isdigit() else None
        assert last is not None
        raise last

    def _report(self, method: str, path: str, status: int | None, started: float) -> None:
        if self._on_request is not None:
            self._on_request(method, path, status, time.monotonic() - started)

    @staticmethod
    def _error(method: str, url: str, resp: requests.Response) -> CouchError:
        try:
            payload = resp.json() if resp.content else {}
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        error = str(payload.get("error", resp.reason or ""))
        reason = str(payload.get("reason", ""))
        cls = error_for_status(resp.status_code)
        exc = cls(
            redact(f"{method} {url} -> {resp.status_code} {error}: {reason}".rstrip(": ")),
            status=resp.status_code,
            error=error,
            reason=redact(reason),
            method=method,
            url=redact(url),
        )
        resp.close()
        return exc
