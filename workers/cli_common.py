"""Options and builders shared by the CLI commands: settings, clients, logging, output."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from couchfarm import factory, trace
from couchfarm.errors import ConfigError
from couchfarm.settings import Settings
from couchfarm.validation import load_validator
from workers.logs import setup_logging

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
F = TypeVar("F", bound=Callable[..., Any])


def config_options(func: F) -> F:
    """``--config`` and ``--url`` on every command that talks to CouchDB."""
    func = click.option(
        "--url",
        "couch_url",
        default=None,  # COUCHFARM_COUCH_URL is read by the settings, so errors name the variable
        help="CouchDB server URL (credentials in userinfo are never printed). [env COUCHFARM_COUCH_URL]",
    )(func)
    func = click.option(
        "--config",
        "config",
        envvar="COUCHFARM_CONFIG",
        default=None,
        type=click.Path(dir_okay=False),
        help="YAML settings file. [env COUCHFARM_CONFIG]",
    )(func)
    return func


def load_settings(config: str | None, strategy: str | None = None, **overrides: Any) -> Settings:
    """The settings, with every strategy rule built once so a bad one fails now, naming its file."""
    settings = Settings.load(config, **overrides)
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
