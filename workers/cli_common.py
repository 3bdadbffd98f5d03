"""Options and builders shared by the CLI commands: settings, clients, logging, output."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from couchfarm.breaker import CircuitBreaker, RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.http import make_session
from couchfarm.settings import Settings
from workers.logs import setup_logging

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
F = TypeVar("F", bound=Callable[..., Any])


def config_options(func: F) -> F:
    """``--config`` and ``--url`` on every command that talks to CouchDB."""
    func = click.option("--url", "couch_url", envvar="COUCHFARM_COUCH_URL", default=None,
                        help="CouchDB server URL (credentials in userinfo are never printed). "
                        "[env COUCHFARM_COUCH_URL]")(func)  # fmt: skip
    func = click.option("--config", "config", envvar="COUCHFARM_CONFIG", default=None,
                        type=click.Path(dir_okay=False),
                        help="YAML settings file. [env COUCHFARM_CONFIG]")(func)  # fmt: skip
    return func


def load_settings(config: str | None, **overrides: Any) -> Settings:
    settings = Settings.load(config, **overrides)
    setup_logging(settings.log_format, settings.log_level)
    return settings


def couch_client(settings: Settings, url: str | None = None) -> CouchClient:
    """The CouchDB client for ``url`` (default: the farm's server), built from the settings."""
    password = settings.couch_password.get_secret_value() if settings.couch_password else None
    session = make_session(settings.couch_pool_size, settings.couch_user, password)
    return CouchClient(
        url or settings.couch_url,
        session=session,
        timeout=(settings.couch_connect_timeout, settings.couch_read_timeout),
        retry=RetryPolicy(settings.couch_retries, settings.couch_backoff, settings.couch_backoff_max),
        breaker=CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown),
    )


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


@contextlib.contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; yields the function that advances it."""
    bar = click.progressbar(
        length=max(total, 1),
        label=label,
        file=sys.stderr,
        hidden=not sys.stderr.isatty(),
    )
    with bar:
        yield bar.update
