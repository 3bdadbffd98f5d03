"""``couchfarm demo``."""

from __future__ import annotations

import signal
import sys

import click

from workers.local_servers import free_port


@click.command()
@click.option("--docs", default=300, show_default=True, help="Documents to write, edit and resolve.")
@click.option(
    "--node", "nodes", multiple=True, help="Use real CouchDB nodes instead (give exactly two URLs)."
)
@click.option("-c", "--concurrency", default=2, show_default=True, help="Worker processes.")
@click.option("--flower-port", type=int, default=None, help="Flower's port (default: a free one).")
@click.option("--ui-port", type=int, default=None, help="couchfarm ui's port (default: a free one).")
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the farm, Flower and couchfarm ui running after the summary, until Ctrl-C.",
)
def demo(
    docs: int,
    nodes: tuple[str, ...],
    concurrency: int,
    flower_port: int | None,
    ui_port: int | None,
    keep: bool,
) -> None:
    """A local farm, a network partition, conflicting offline edits, and every conflict resolved live."""
    from workers.demo import Demo

    if nodes and len(nodes) != 2:
        raise click.UsageError("give --node twice (two CouchDB URLs), or not at all")
    runner = Demo(docs, nodes, concurrency, flower_port or free_port(), ui_port, keep)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    # Ctrl-C stops the demo even when it was started in the background of a script, where the shell
    # ignores SIGINT (an ignored signal is inherited, and Python then leaves it ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(runner.run())
    except KeyboardInterrupt:
        click.echo("\ninterrupted: stopping everything the demo started", err=True)
        runner.stop()
        sys.exit(130)
