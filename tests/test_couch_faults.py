"""Faults: a server that dies, a breaker that opens and closes, passwords that never leak."""

from __future__ import annotations

import logging
import pickle
import threading
import time

import pytest

from couchfarm.breaker import BreakerState, CircuitBreaker, RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.errors import CircuitOpen, Conflict, Unauthorized, Unavailable
from workers.local_servers import PouchServer


@pytest.fixture
def own_server() -> PouchServer:
    server = PouchServer(password="s3cr3t-pw").start()
    yield server
    server.stop()


def fast(url: str, **kw: object) -> CouchClient:
    kw.setdefault("retry", RetryPolicy(attempts=3, base=0.01, cap=0.05))
    return CouchClient(url, timeout=(0.5, 5.0), **kw)  # type: ignore[arg-type]


def test_server_killed_mid_request_is_retried_then_typed(own_server: PouchServer) -> None:
    sleeps: list[float] = []
    client = fast(own_server.url, sleep=sleeps.append)
    client.create_db("feed")
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            client.changes("feed", feed="longpoll", since="now", deadline=30, heartbeat=100)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.7)
    own_server.kill()  # mid-request: the longpoll is open
    t.join(10)
    assert errors and isinstance(errors[0], Unavailable)
    assert len(sleeps) >= 2  # the dropped feed was read again with backoff before giving up
    sleeps.clear()
    with pytest.raises(Unavailable) as info:
        client.db_info("feed")  # connection refused: retried with backoff, then typed
    assert len(sleeps) == 2 and all(0 <= s <= 0.05 for s in sleeps)
    assert "s3cr3t-pw" not in str(info.value) and "s3cr3t-pw" not in repr(info.value)


def test_breaker_opens_after_n_failures_and_closes_after_recovery(own_server: PouchServer) -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown=10, clock=lambda: now[0])
    client = fast(own_server.url, breaker=breaker, retry=RetryPolicy(attempts=1), sleep=lambda s: None)
    client.create_db("b")
    own_server.kill()
    for _ in range(3):
        with pytest.raises(Unavailable):
            client.db_info("b")
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        client.db_info("b")  # fails fast, no request
    own_server.start()
    now[0] += 10
    assert breaker.state is BreakerState.HALF_OPEN
    client.create_db("b")  # the trial request succeeds (data is gone: in-memory server)
    assert breaker.state is BreakerState.CLOSED


def test_half_open_failure_reopens() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, cooldown=5, clock=lambda: now[0])
    breaker.failure()
    assert not breaker.allow()
    now[0] = 5
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failure()
    assert breaker.state is BreakerState.OPEN and breaker.retry_in() == 5


def test_4xx_is_never_retried(own_server: PouchServer) -> None:
    sleeps: list[float] = []
    client = fast(own_server.url, sleep=sleeps.append)
    client.create_db("c")
    client.put("c", {"_id": "x"})
    with pytest.raises(Conflict):
        client.put("c", {"_id": "x"})
    bad = fast(own_server.plain_url.replace("://", "://admin:wrong@"), sleep=sleeps.append)
    with pytest.raises(Unauthorized):
        bad.db_info("c")
    assert sleeps == []


def test_password_in_url_never_logged_or_raised(
    own_server: PouchServer, caplog: pytest.LogCaptureFixture
) -> None:
    from couchfarm.redact import RedactingFilter

    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RedactingFilter())
    client = fast(own_server.url, sleep=lambda s: None)
    logging.getLogger("test").info("connecting to %s", own_server.url)
    assert "s3cr3t-pw" not in repr(client) and "s3cr3t-pw" not in client.url
    client.create_db("r")
    own_server.kill()
    with pytest.raises(Unavailable) as info:
        client.db_info("r")
    logging.getLogger("test").exception("failed", exc_info=info.value)
    text = caplog.text + str(info.value) + repr(info.value) + repr(pickle.loads(pickle.dumps(info.value)))
    assert "s3cr3t-pw" not in text
    assert "connecting to" in caplog.text


def test_errors_pickle_with_their_fields() -> None:
    err = Conflict("x", status=409, error="conflict", reason="Document update conflict.")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is Conflict and back.status == 409 and back.reason == "Document update conflict."
