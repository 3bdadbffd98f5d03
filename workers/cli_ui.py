"""``couchfarm ui``: the web page for people (workers/ui/)."""

from __future__ import annotations

import click

from couchfarm.settings import Settings
from workers.cli_common import pass_settings


@click.command()
@pass_settings
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="COUCHFARM_UI_HOST",
    help="Address to listen on. [env COUCHFARM_UI_HOST]",
)
@click.option(
    "--port",
    default=5556,
    show_default=True,
    type=int,
    envvar="COUCHFARM_UI_PORT",
    help="Port to listen on. [env COUCHFARM_UI_PORT]",
)
@click.option("--db", "dbs", multiple=True, help="Also show this database (repeatable).")
@click.option(
    "--read-only",
    is_flag=True,
    envvar="COUCHFARM_UI_READ_ONLY",
    help="Show everything, change nothing. [env COUCHFARM_UI_READ_ONLY]",
)
@click.option("--unauthenticated", is_flag=True, help="Run without authentication (refused otherwise).")
def ui(
    settings: Settings,
    host: str,
    port: int,
    dbs: tuple[str, ...],
    read_only: bool,
    unauthenticated: bool,
) -> None:
    """Conflicts side by side, dead letters, and why conflicts happen, on a web page.

    Basic auth from ui_user/ui_password (COUCHFARM_UI_USER, COUCHFARM_UI_PASSWORD); every write is a
    POST with a CSRF token. Needs the farm's Redis (COUCHFARM_REDIS_URL).
    """
    from couchfarm import factory
    from workers.ui.server import application, serve

    settings = factory.with_farm(settings)  # one farm's page
    app = application(settings, dbs=dbs, read_only=read_only, unauthenticated=unauthenticated)
    factory.state_redis(settings).ping()  # no Redis, no page: say so now rather than on every request
    if unauthenticated and not (settings.ui_user and settings.ui_password):
        click.echo("warning: couchfarm ui runs WITHOUT authentication", err=True)
    mode = " (read-only)" if read_only else ""
    click.echo(f"couchfarm ui{mode} on http://{host}:{port}/", err=True)
    serve(app, host, port)
