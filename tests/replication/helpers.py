"""Helpers for the replication tests: real pouchdb-server nodes, topology files, the CLI."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from click.testing import CliRunner, Result

from couchfarm.couch import CouchClient
from workers.local_servers import PouchServer

CREDS = "admin:secret"


def start_nodes(names: list[str]) -> dict[str, PouchServer]:
    servers = {name: PouchServer() for name in names}
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(lambda s: s.start(), servers.values()))
    return servers


def stop_nodes(servers: dict[str, PouchServer]) -> None:
    for server in servers.values():
        server.stop()


def env_for(servers: dict[str, PouchServer]) -> dict[str, str]:
    """One credentials variable per node, as an operator would export them."""
    return {f"CF_{name.upper()}_CREDS": CREDS for name in servers}


def topology_text(servers: dict[str, PouchServer], name: str, databases: list[str], links: str) -> str:
    nodes = "\n".join(
        f'  {n}: {{url: "{s.plain_url}", auth: {{env: CF_{n.upper()}_CREDS}}}}' for n, s in servers.items()
    )
    return f"name: {name}\nnodes:\n{nodes}\ndatabases: [{', '.join(databases)}]\nlinks:\n{links}"


def run_cli(args: list[str], env: dict[str, str]) -> Result:
    """``couchfarm replication ARGS`` through the real entry point, so exit statuses are the ones a
    shell sees (``main`` maps errors and runs click with standalone_mode off)."""
    from workers.cli import main

    runner = CliRunner()
    code, error = 0, None
    with runner.isolation(env=env) as (out, err, both):
        try:
            main(["replication", *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # reported through Result.exception, as CliRunner does
            code, error = 1, exc
        stdout, stderr, output = out.getvalue(), err.getvalue(), both.getvalue()
    return Result(runner, stdout, stderr, output, None, code, error)


def clients(servers: dict[str, PouchServer]) -> dict[str, CouchClient]:
    return {name: CouchClient(s.url) for name, s in servers.items()}
