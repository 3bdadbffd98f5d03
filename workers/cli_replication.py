"""``couchfarm replication ...``: validate, plan and apply a topology; status, watch, rescan and sync.

Exit statuses: ``validate`` 0 valid, 2 invalid; ``plan`` 0 nothing to change, 2 changes pending,
1 error; ``apply`` 0 applied, 3 some changes blocked (server limits, unreadable node, a ``_security``
change that needs --allow-widen), 1 an error or a change the server refused; ``watch`` in a bounded
mode 0, or 2 when an alert fired; ``sync`` 0 done, 1 failed, 3 still running when --wait timed out,
4 the server that would run it cannot be reached (README "Exit codes").
Credentials are read from the environment variables the topology names and are never printed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from couchfarm import metrics
from couchfarm.errors import FarmError
from couchfarm.redact import redact, redact_url, redact_value
from couchfarm.replication.apply import Result, apply_plan
from couchfarm.replication.endpoints import client_for, node_clients
from couchfarm.replication.errors import ReplicationBlocked
from couchfarm.replication.expand import load_topology
from couchfarm.replication.plan import build_plan
from couchfarm.replication.relay import Relays
from couchfarm.replication.render import Credential, Credentials, render, resolve_credentials
from couchfarm.replication.rescan import rescan as rescan_doc
from couchfarm.replication.security_plan import declared_security
from couchfarm.replication.status import Prober, ReplicationStatus, collect_all, status_table
from couchfarm.replication.sync import Mode, SyncJob, resolve_end, start_all, sync_jobs
from couchfarm.replication.sync_follow import describe, follow
from couchfarm.replication.topology import Topology
from couchfarm.replication.watch import Event, WebhookSink, log_sink
from couchfarm.replication.watch import Watcher as StatusWatcher
from couchfarm.settings import Settings
from workers.cli_common import CONTEXT, echo_json, load_settings, pass_settings
from workers.logs import tag_process

Targets = tuple[dict[str, Any], Topology | None, Credentials | None]


@click.group(context_settings=CONTEXT)
def replication() -> None:
    """Declare replication topologies, apply them to each node's _replicator, watch the jobs."""


def topology_option(func: Any) -> Any:
    return click.option(
        "--topology",
        "-t",
        "topology_path",
        envvar="COUCHFARM_TOPOLOGY",
        type=click.Path(dir_okay=False),
        help="Topology file naming the nodes to look at. [env COUCHFARM_TOPOLOGY]",
    )(func)


@replication.command()
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check a topology FILE without touching the network; list the documents it declares."""
    load_settings(None)
    topo = load_topology(file)
    placeholders: Credentials = {
        n: _placeholder(node.auth.type) if node.auth else None for n, node in topo.nodes.items()
    }
    for rep in topo.replications:
        render(rep, topo, placeholders, couchdb=True)
    for rep in topo.replications:
        mode = "continuous" if rep.continuous else "one-shot"
        via = f", relays {', '.join(rep.via)}" if rep.via else ""
        click.echo(f"{rep.node:<12} {rep.doc_id}  ({mode}{via})")
    for holder, db in declared_security(topo):
        click.echo(f"{holder:<12} {db}/_security")
    click.echo(
        f"{file}: valid: {len(topo.nodes)} node(s), {len(topo.databases)} database(s), "
        f"{len(topo.replications)} replication document(s)",
        err=True,
    )
    for name, node in topo.nodes.items():
        if node.auth and node.auth.env not in os.environ:
            click.echo(
                f"note: {node.auth.env} (credentials of {name}) is not set here; plan and apply will need it",
                err=True,
            )


def _exit(code: int) -> None:
    """End with ``code``. ``sys.exit``, not ``ctx.exit``: ``main`` runs click with standalone_mode off,
    where click turns ``ctx.exit`` into a return value that would be lost."""
    if code:
        sys.exit(code)


def _placeholder(kind: str) -> Credential:
    return Credential(kind, "user" if kind == "basic" else None, "placeholder")  # type: ignore[arg-type]


def _connect(file: str) -> tuple[Topology, dict[str, Any], Credentials]:
    topo = load_topology(file)
    creds = resolve_credentials(topo, os.environ)
    return topo, node_clients(topo, creds), creds


@replication.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--prune", is_flag=True, help="Also plan to delete documents this topology no longer declares.")
@click.option("-v", "--verbose", is_flag=True, help="Also list unchanged documents and every created field.")
def plan(file: str, as_json: bool, prune: bool, verbose: bool) -> None:
    """Show what apply would change on each node: exit 0 when nothing, 2 when changes are pending."""
    load_settings(None)
    try:
        topo, clients, creds = _connect(file)
        result = build_plan(topo, clients, creds, prune=prune)
    except FarmError as exc:  # exit 1, so that 2 always means "changes pending"
        click.echo(f"couchfarm: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    if as_json:
        echo_json(result.as_json())
    else:
        click.echo("\n".join(result.lines(verbose)))
    _exit(2 if result.has_pending else 0)


@replication.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--prune", is_flag=True, help="Delete documents this topology created and no longer declares.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
@click.option(
    "--allow-widen", is_flag=True, help="Apply _security changes that remove every member or every admin."
)
def apply(file: str, prune: bool, as_json: bool, allow_widen: bool) -> None:
    """Make each node's _replicator and _security match FILE; documents couchfarm did not create are
    never touched."""
    load_settings(None)
    try:
        topo, clients, creds = _connect(file)
        result = build_plan(topo, clients, creds, prune=prune)
        outcomes = apply_plan(result, clients, allow_widen=allow_widen)
    except FarmError as exc:  # exit 1 like plan: 2 and 3 have their own meaning
        click.echo(f"couchfarm: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    for warning in result.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    if as_json:
        echo_json([{**o.change.as_json(), "result": o.result.value, "detail": o.detail} for o in outcomes])
    else:
        for outcome in outcomes:
            click.echo(outcome.line())
        click.echo(f"{sum(o.result is Result.DONE for o in outcomes)} change(s) applied", err=True)
    results = {o.result for o in outcomes}
    _exit(1 if Result.FAILED in results else 3 if Result.BLOCKED in results else 0)


def _targets(topology_path: str | None, settings: Settings) -> Targets:
    """The nodes to look at: the topology's, else the one server of the settings / ``--url``."""
    if topology_path:
        topo, clients, creds = _connect(topology_path)
        return clients, topo, creds
    password = settings.couch_password.get_secret_value() if settings.couch_password else None
    cred = Credential("basic", settings.couch_user, password) if settings.couch_user and password else None
    client = client_for(settings.couch_url, cred, tls=settings.couch_tls)
    return {redact_url(client.url).split("://", 1)[-1]: client}, None, None


@replication.command()
@topology_option
@pass_settings
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def status(topology_path: str | None, settings: Settings, as_json: bool) -> None:
    """Every replication's state, reason, progress and pending changes, per node."""
    clients, topo, creds = _targets(topology_path, settings)
    rows = collect_all(clients, topo, creds)
    if as_json:
        echo_json([r.as_json() for r in rows])
        return
    click.echo("\n".join(status_table(rows)))


@replication.command()
@topology_option
@pass_settings
@click.option(
    "--interval",
    default=10.0,
    show_default=True,
    envvar="COUCHFARM_WATCH_INTERVAL",
    help="Seconds between polls. [env COUCHFARM_WATCH_INTERVAL]",
)
@click.option("--once", is_flag=True, help="Poll once and stop.")
@click.option("--iterations", type=click.IntRange(min=1), help="Poll N times and stop.")
@click.option("--until-idle", is_flag=True, help="Stop after a poll that changed nothing.")
@click.option(
    "--stall-after",
    default=300.0,
    show_default=True,
    envvar="COUCHFARM_STALL_AFTER",
    help="Seconds a checkpoint may stand still while the source moves. [env COUCHFARM_STALL_AFTER]",
)
@click.option(
    "--webhook", envvar="COUCHFARM_WEBHOOK_URL", help="POST every event here. [env COUCHFARM_WEBHOOK_URL]"
)
@click.option("--alerts-only", is_flag=True, help="Send only alerts to the webhook.")
@click.option(
    "--metrics-port",
    type=int,
    envvar="COUCHFARM_METRICS_PORT",
    help="Serve Prometheus metrics on this port (default: metrics_port of the settings). "
    "[env COUCHFARM_METRICS_PORT]",
)
@click.option(
    "--relay-after",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    envvar="COUCHFARM_RELAY_AFTER",
    help="Seconds a link with relays (via:) may fail before it is relayed; a link's relay_after wins. "
    "[env COUCHFARM_RELAY_AFTER]",
)
@click.option("--json", "as_json", is_flag=True, help="Also print every event as a JSON line on stdout.")
def watch(
    topology_path: str | None,
    settings: Settings,
    interval: float,
    once: bool,
    iterations: int | None,
    until_idle: bool,
    stall_after: float,
    webhook: str | None,
    alerts_only: bool,
    metrics_port: int | None,
    relay_after: float,
    as_json: bool,
) -> None:
    """Poll the replications and emit an event per state transition; alert on crashing/failed jobs,
    stalled checkpoints, growing write failures and sequences that go backwards. With a topology,
    links that name relays (via:) are carried through a relay while they fail, and back after."""
    clients, topo, creds = _targets(topology_path, settings)
    tag_process(settings)  # the metrics' farm label: the farm setting, "-" without one
    port = metrics_port if metrics_port is not None else settings.metrics_port  # the flag, else the file
    if port:
        metrics.serve(port)
    metrics.started("replication_watch")
    sinks = [log_sink(), _metrics_sink]
    if webhook:
        sinks.append(WebhookSink(webhook, alerts_only=alerts_only))
    if as_json:
        sinks.append(lambda e: click.echo(json.dumps(e.as_json(), sort_keys=True, default=str)))
    relays = Relays(topo, clients, creds or {}, relay_after=relay_after) if topo else None

    def collect() -> list[ReplicationStatus]:
        statuses = collect_all(clients, topo, creds)
        metrics.replication_poll(list(clients), [(s.node, s.state) for s in statuses])
        return statuses

    watcher = StatusWatcher(collect, sinks, stall_after=stall_after, relay=relays)
    summary = watcher.run(iterations=1 if once else iterations, until_idle=until_idle, interval=interval)
    click.echo(f"{summary.polls} poll(s), {summary.events} event(s), {summary.alerts} alert(s)", err=True)
    _exit(2 if summary.alerts else 0)


def _metrics_sink(event: Event) -> None:
    """The metric hook: a Prometheus counter per event kind and severity."""
    metrics.replication_event(event.kind, event.severity.value)


@replication.command()
@click.argument("doc_id")
@topology_option
@pass_settings
@click.option("--node", help="The node whose _replicator holds DOC_ID (when several do).")
@click.option("--checkpoint", help="The _local checkpoint id to delete, when couchfarm cannot tell.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def rescan(
    doc_id: str,
    topology_path: str | None,
    settings: Settings,
    node: str | None,
    checkpoint: str | None,
    yes: bool,
) -> None:
    """Delete DOC_ID's checkpoints on source and target and recreate it: a clean re-scan."""
    clients, topo, creds = _targets(topology_path, settings)
    holders = [n for n, c in clients.items() if (node is None or n == node) and _holds(c, doc_id)]
    if len(holders) != 1:
        where = "no node" if not holders else f"several nodes ({', '.join(holders)}); pick one with --node"
        raise ReplicationBlocked(f"{doc_id} is on {where}", doc_id=doc_id)
    if not yes and sys.stdin.isatty():
        click.confirm(f"re-scan {doc_id} on {holders[0]} from the start?", abort=True)
    report = rescan_doc(
        holders[0], clients[holders[0]], doc_id, topo=topo, creds=creds, checkpoint=checkpoint
    )
    click.echo(report.line())


def _holds(client: Any, doc_id: str) -> bool:
    from couchfarm.replication.api import get_doc

    return get_doc(client, doc_id) is not None


@replication.command()
@click.argument("source")
@click.argument("target")
@topology_option
@click.option("--db", "dbs", multiple=True, help="Database to sync (repeatable; default: the topology's).")
@click.option("--push", "mode", flag_value="push", default=True, help="Run on the source (default).")
@click.option("--pull", "mode", flag_value="pull", help="Run on the target.")
@click.option("--both", "mode", flag_value="both", help="Both directions, each run on its own source.")
@click.option("--create-target", is_flag=True, help="Let the replication create a missing target database.")
@click.option("--wait", is_flag=True, help="Follow the job to its end; exit 0 only when it completed.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    envvar="COUCHFARM_SYNC_TIMEOUT",
    help="Seconds --wait waits. [env COUCHFARM_SYNC_TIMEOUT]",
)
@click.option("--source-auth-env", metavar="VAR", help="Variable holding user:password for SOURCE.")
@click.option("--target-auth-env", metavar="VAR", help="Variable holding user:password for TARGET.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def sync(
    source: str,
    target: str,
    topology_path: str | None,
    dbs: tuple[str, ...],
    mode: Mode,
    create_target: bool,
    wait: bool,
    timeout: float,
    source_auth_env: str | None,
    target_auth_env: str | None,
    as_json: bool,
) -> None:
    """One-shot replication of SOURCE to TARGET (node names of --topology, or URLs) through
    _replicator. Exit 0 when written (with --wait: completed), 1 when it failed (the reason is
    printed), 3 when --wait timed out with the job still going, 4 when the server that would run it
    (SOURCE with --push, TARGET with --pull) cannot be reached."""
    load_settings(None)
    topo = load_topology(topology_path) if topology_path else None
    src = resolve_end(source, topo, os.environ, source_auth_env)
    tgt = resolve_end(target, topo, os.environ, target_auth_env)
    names = list(dbs) or (topo.databases if topo else [])
    jobs = sync_jobs(src, tgt, names, mode, create_target=create_target)
    started = start_all(jobs, lambda warning: click.echo(f"warning: {redact(warning)}", err=True))
    for job in jobs:
        click.echo(f"{started[job.doc_id]} {job.doc_id} on {job.runner.label} ({job.route})", err=True)
    if not wait:
        if as_json:
            echo_json({"ok": True, "syncs": [{"doc_id": j.doc_id, "state": started[j.doc_id]} for j in jobs]})
        return
    prober = Prober(topo, {end.label: end.cred for end in (src, tgt)})  # peer_url -> url, node creds
    results = follow(jobs, timeout=timeout, prober=prober, on_progress=_progress)
    if as_json:
        echo_json(redact_value({"ok": all(r.ok for r in results), "syncs": [r.as_json() for r in results]}))
    else:
        click.echo("\n".join(redact(r.line()) for r in results))
    _exit(0 if all(r.ok for r in results) else 3 if all(r.ok or r.timed_out for r in results) else 1)


def _progress(job: SyncJob, status: ReplicationStatus) -> None:
    click.echo(redact(f"  {job.doc_id}: {status.state}, {describe(status)}"), err=True)
