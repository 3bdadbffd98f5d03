"""Options and builders shared by the CLI commands: settings, clients, logging, output."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from couchfarm import factory, trace
from couchfarm.couch import CouchClient
from couchfarm.errors import ConfigError, NotCouchDB
from couchfarm.redact import redact, strip_userinfo
from couchfarm.settings import Settings
from couchfarm.validation import load_validator
from workers.exit_codes import CONFIG, UNREACHABLE
from workers.logs import setup_logging

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
R = TypeVar("R")


def pass_settings(func: Callable[..., R]) -> Callable[..., R]:
    """``--config`` and ``--url`` on a command that talks to CouchDB, and the settings they name
    handed to the command as ``settings`` (like rq's ``pass_cli_config``): loaded by
    :func:`load_settings` before the command's body runs, its ``--strategy`` checked too when it
    has one. Errors are the ones ``load_settings`` raises, named as ever."""

    @functools.wraps(func)
    def command(*args: Any, config: str | None, couch_url: str | None, **kwargs: Any) -> R:
        settings = load_settings(config, kwargs.get("strategy"), couch_url=couch_url)
        return func(*args, settings=settings, **kwargs)

    command = click.option(
        "--url",
        "couch_url",
        default=None,  # COUCHFARM_COUCH_URL is read by the settings, so errors name the variable
        help="CouchDB server URL (credentials in userinfo are never printed). [env COUCHFARM_COUCH_URL]",
    )(command)
    return click.option(
        "--config",
        "config",
        envvar="COUCHFARM_CONFIG",
        default=None,
        type=click.Path(dir_okay=False),
        help="YAML settings file. [env COUCHFARM_CONFIG]",
    )(command)


#: The settings the command runs with, kept for ``server_failure``: a Redis error surfaces in ``main``,
#: far from the code that knew which URL it used.
_LOADED: list[Settings] = []


def load_settings(config: str | None, strategy: str | None = None, **overrides: Any) -> Settings:
    """The settings, with every strategy rule built once so a bad one fails now, naming its file."""
    settings = Settings.load(config, **overrides)
    _LOADED[:] = [settings]
    setup_logging(settings.log_format, settings.log_level)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") and trace.enable_opentelemetry():
        logging.getLogger("couchfarm").info("exporting traces with OpenTelemetry")
    try:
        factory.router(settings, strategy)
        for rule in settings.databases:  # schemas are read now, not at the first conflict
            for spec in (rule, *rule.types):
                if spec.schema_path:
                    load_validator(spec.schema_path, settings.config_dir)
    except ConfigError as exc:
        where = config or os.environ.get("COUCHFARM_CONFIG") or "COUCHFARM_DATABASES / --strategy"
        raise ConfigError(f"{exc} (in {where})", field=exc.field, source=str(where)) from None
    return settings


def reload_settings(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` loaded again with ``overrides`` (a value found at run time), and kept for
    ``server_failure`` like the first."""
    settings = settings.with_overrides(**overrides)
    _LOADED[:] = [settings]
    return settings


def couch_client(settings: Settings) -> CouchClient:
    """The farm's CouchDB client, after one ``GET /`` that checks the URL reaches CouchDB at all
    (commands call this once; the hot paths build their clients with ``factory.couch_client``)."""
    client = factory.couch_client(settings)
    try:
        client.check_server()
    except NotCouchDB as exc:
        source = settings.source_of("couch_url")
        raise ConfigError(
            f"{exc} (couch_url, from {source}): is the URL or its port wrong?",
            field="couch_url",
            source=source,
        ) from None
    return client


def server_failure(exc: BaseException) -> tuple[int, str] | None:
    """The exit status and one-line message for a Redis error that ended a command (the server
    named without credentials, with the setting and where it came from), or None for other errors.

    ``UNREACHABLE`` when Redis could not be reached (refused, timed out), ``CONFIG`` when it refused
    the credentials."""
    settings = _LOADED[0] if _LOADED else None
    if type(exc).__module__.startswith("kombu"):  # the Celery broker: publishing or connecting failed
        broker = settings.broker_url or settings.redis_url if settings else None
        where = f"the broker at {strip_userinfo(broker)[0]}" if broker else "the broker"
        return UNREACHABLE, f"cannot reach {where} (broker_url): {redact(str(exc)).rstrip('.')}"
    if not type(exc).__module__.startswith("redis"):
        return None
    from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

    url = settings.redis_url if settings and settings.redis_url else None
    server = f"Redis at {strip_userinfo(url)[0]}" if url else "Redis"
    where = f" (redis_url, from {settings.source_of('redis_url')})" if settings and url else ""
    reason = redact(str(exc)).rstrip(".") or type(exc).__name__
    if isinstance(exc, AuthenticationError):
        return CONFIG, f"{server}{where} refused the credentials: {reason}"
    if isinstance(exc, ConnectionError | TimeoutError):
        hint = ""
        if isinstance(exc, TimeoutError) and url and url.lower().startswith("rediss://"):
            hint = " (a rediss:// URL to a Redis without TLS times out like this: check the scheme)"
        return UNREACHABLE, f"cannot reach {server}{where}: {reason}{hint}"
    return None


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
