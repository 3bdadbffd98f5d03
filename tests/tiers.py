"""The two test tiers, and the guard that keeps servers out of the unit tier.

- **unit**: no server, no process. Logic against fakes (fakeredis, a fake CouchDB client behind the
  typed seam, recorded CouchDB replies as data). ``./scripts/test -m "not integration"``.
- **integration** (``pytest.mark.integration``): starts a server or a process: pouchdb-server,
  redis-server (also with TLS, or sentinels), the farm's processes, the CLI in a subprocess, Chromium,
  Prometheus/promtool, an HTTP stub on a loopback port.

This module is a pytest plugin (``tests/conftest.py`` registers it). A test is marked integration when
it uses a fixture of :data:`SERVER_FIXTURES` (pytest's ``fixturenames`` holds the fixtures a test uses
transitively), when it is the ``[real]`` instance of ``any_redis``, or explicitly
(``pytest.mark.integration``, with a comment saying what it starts) where it starts processes itself.

While a unit test runs, starting a process or listening on a socket raises :class:`UnitTierError`, and
the test fails even if it swallowed that error: a test that starts a server without saying so cannot
pass silently in the unit tier.
"""

from __future__ import annotations

import multiprocessing.process
import os
import socket
import subprocess
from collections.abc import Generator
from typing import Any

import pytest

#: Fixtures that start a server or depend on one that does (listed even where pytest would find the
#: root through the dependency, so that rewriting a fixture cannot move a test into the unit tier).
SERVER_FIXTURES = frozenset(
    {
        # tests/conftest.py: the session's pouchdb-server and redis-server
        "pouch_server",
        "couch_url",
        "client",
        "db",
        "redis_server",
        "redis_url",
        "real_redis",
        # tests/ui/conftest.py and tests/ui/test_browser.py: servers with distinctive passwords, Chromium
        "ui_pouch",
        "ui_redis",
        "browser",
        # tests/tls/conftest.py: a TLS proxy in front of pouchdb-server, Redis over TLS
        "couch_proxy",
        "https_url",
        "tls_redis",
        "rediss_url",
        # tests/replication: pouchdb-server nodes per module
        "two_nodes",
        "three_nodes",
        "relay_nodes",
        # servers and farms of single modules
        "own_server",  # tests/test_couch_faults.py
        "second_server",  # tests/farm/test_farms.py
        "servers",  # tests/dlq/test_dead_letters_e2e.py
        "configured",  # tests/dlq/test_unexpected.py
        "farm",  # tests/farm/test_farm.py
        "make_farm",  # tests/farm/test_recovery.py
        "live",  # tests/prometheus/test_live.py: a farm and a Prometheus server
    }
)

#: Parametrised fixtures whose parameter picks a real server: (fixture, parameter).
SERVER_PARAMS = frozenset({("any_redis", "real")})

MARKER = "integration: starts a server or a process (tests/tiers.py); -m 'not integration' runs the unit tier"


def is_integration(item: pytest.Item) -> bool:
    """Whether ``item`` belongs to the integration tier (before the marker is added)."""
    if item.get_closest_marker("integration") is not None:
        return True
    if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    params: dict[str, Any] = callspec.params if callspec is not None else {}
    return any(params.get(name) == value for name, value in SERVER_PARAMS)


class UnitTierError(RuntimeError):
    """Raised when a test of the unit tier starts a process or listens on a socket."""


class Guard:
    """Refuses processes and listening sockets while a unit test runs (installed once per session)."""

    def __init__(self) -> None:
        self.unit: pytest.Item | None = None  #: the unit test running now, None otherwise
        self.violations: dict[str, list[str]] = {}  #: node id -> what it started
        self.failed: set[str] = set()  #: node ids already reported as failed
        self.installed = False

    def check(self, what: str) -> None:
        if self.unit is None:
            return
        message = (
            f"{self.unit.nodeid} is a unit test (not marked integration) but {what}: "
            "mark it pytest.mark.integration, or use a server fixture of tests/tiers.py"
        )
        self.violations.setdefault(self.unit.nodeid, []).append(message)
        raise UnitTierError(message)

    def settle(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Turn the report of a unit test that started something, and passed anyway (it caught the
        error), into a failure: the call's report, or the teardown's for what teardown started."""
        if report.failed:
            self.failed.add(item.nodeid)
        elif report.when != "setup" and item.nodeid in self.violations and item.nodeid not in self.failed:
            report.outcome = "failed"
            report.longrepr = "\n".join(self.violations[item.nodeid])
            self.failed.add(item.nodeid)

    def forgive(self, item: pytest.Item) -> list[str]:
        """What ``item`` was refused, no longer held against it (for the guard's own tests)."""
        return self.violations.pop(item.nodeid, [])

    def install(self) -> None:
        if self.installed:
            return
        self.installed = True
        guard = self
        execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]
        process_start = multiprocessing.process.BaseProcess.start
        listen = socket.socket.listen
        system = os.system

        def _execute_child(popen: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> Any:
            guard.check(f"started a process: {str(args)[:200]}")
            return execute_child(popen, args, *rest, **kw)

        def _start(process: multiprocessing.process.BaseProcess) -> None:
            guard.check(f"started a process: {process!r}")
            process_start(process)

        def _listen(sock: socket.socket, *args: Any) -> None:
            guard.check(f"listened on a socket: {sock.getsockname()!r}")
            listen(sock, *args)

        def _system(command: Any) -> int:
            guard.check(f"ran a shell command: {command!r:.200}")
            return system(command)

        subprocess.Popen._execute_child = _execute_child  # type: ignore[attr-defined]
        multiprocessing.process.BaseProcess.start = _start  # type: ignore[method-assign]
        socket.socket.listen = _listen  # type: ignore[method-assign]
        os.system = _system


GUARD = Guard()


# -- the plugin's hooks --------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    GUARD.install()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the integration tier before ``-m`` selects."""
    for item in items:
        if is_integration(item):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """While a unit test runs (setup, call, teardown), no process and no listening socket."""
    GUARD.unit = None if item.get_closest_marker("integration") else item
    try:
        yield
    finally:
        GUARD.unit = None


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object]) -> None:
    """A server fixture asked for by a unit test (``request.getfixturevalue`` escapes the marking)."""
    if fixturedef.argname in SERVER_FIXTURES:
        GUARD.check(f"asked for the server fixture {fixturedef.argname!r}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Any, None]:
    """Fail a unit test that started something even if it swallowed ``UnitTierError``."""
    report: pytest.TestReport = (yield).get_result()
    GUARD.settle(item, report)
