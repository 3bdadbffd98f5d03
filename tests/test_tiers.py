"""The unit tier cannot start a server: the guard of tests/tiers.py refuses processes, listening
sockets and server fixtures while a test not marked integration runs, and fails such a test even when
it catches the error."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.tiers import GUARD, UnitTierError
from workers.local_servers import REPO, PouchServer, RedisServer


def test_a_unit_test_cannot_start_a_process(request: pytest.FixtureRequest) -> None:
    with pytest.raises(UnitTierError, match=r"is a unit test .* but started a process"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert len(GUARD.forgive(request.node)) == 1


@pytest.mark.parametrize("server", [PouchServer, RedisServer])
def test_a_unit_test_cannot_start_pouchdb_or_redis(server: type, request: pytest.FixtureRequest) -> None:
    unstarted = server()
    with pytest.raises(UnitTierError, match="started a process"):
        unstarted.start()
    assert GUARD.forgive(request.node)
    shutil.rmtree(unstarted.dir)


def test_a_unit_test_cannot_listen_on_a_port(request: pytest.FixtureRequest) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(UnitTierError, match="listened on a socket"):
            sock.listen()
    assert GUARD.forgive(request.node)


INNER = """
import contextlib
import subprocess
import sys

import pytest


@pytest.fixture
def redis_server():
    return "the guard refuses before this runs"


@pytest.fixture
def pouch_server():
    raise AssertionError("a test using this fixture is integration: deselected")


def test_swallows_the_error():
    with contextlib.suppress(Exception):
        subprocess.run([sys.executable, "-c", "pass"])


def test_asks_for_a_server_fixture_at_run_time(request):
    with contextlib.suppress(Exception):
        request.getfixturevalue("redis_server")


def test_uses_a_server_fixture(pouch_server):
    pass


@pytest.mark.integration
def test_marked(pouch_server):
    pass


def test_pure():
    assert 1 + 1 == 2


@pytest.fixture(params=["fake", "real"])
def any_redis(request):
    if request.param == "real":
        raise AssertionError("the [real] instance is integration: deselected")
    return request.param


def test_either_redis(any_redis):
    assert any_redis == "fake"
"""


@pytest.mark.integration  # runs pytest in a subprocess
def test_a_unit_test_that_starts_a_server_fails_even_when_it_catches_the_error(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.tiers", "-m", "not integration", "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "2 failed, 2 passed, 3 deselected in" in out, out
    assert "test_swallows_the_error is a unit test (not marked integration) but started a process" in out
    assert "asked for the server fixture 'redis_server'" in out
