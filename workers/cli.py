"""The ``couchfarm`` command line: one group, subcommands registered from small modules."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import click

from couchfarm.console import printable
from couchfarm.errors import ConfigError, FarmError, Unauthorized, Unavailable
from workers.exit_codes import ABORTED, CONFIG, FAILED, UNREACHABLE

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="couchfarm")
def cli() -> None:
    """couchfarm resolves CouchDB replication conflicts continuously and safely."""


def _register() -> None:
    """Commands live in small modules; they are imported here, after ``_prepare_process``."""
    from workers import (
        cli_conflicts,
        cli_demo,
        cli_dlq,
        cli_farm,
        cli_replication,
        cli_resolve,
        cli_scan,
        cli_status,
        cli_ui,
    )

    for command in (
        cli_scan.scan,
        cli_resolve.resolve,
        cli_resolve.undo,
        cli_farm.run,
        cli_farm.dispatch,
        cli_farm.worker,
        cli_status.status,
        cli_farm.checkpoint,
        cli_dlq.dlq,
        cli_dlq.flower,
        cli_conflicts.conflicts,
        cli_replication.replication,
        cli_demo.demo,
        cli_ui.ui,
    ):
        cli.add_command(command)


def _prepare_process(argv: list[str]) -> None:
    """A worker's prefork children share metrics through files: the directory must be known before
    prometheus_client is first imported, so it is set here, before any command module loads."""
    if argv[:1] == ["worker"] and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        folder = tempfile.mkdtemp(prefix="couchfarm-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        atexit.register(_remove_folder, folder, os.getpid())


def _remove_folder(folder: str, owner: int) -> None:
    """At exit of the process that made it (the pool processes inherit the hook, not the folder)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: configuration errors, farm errors and unreachable servers end with a clear
    message and a documented status, not a trace. Messages are escaped for the terminal: they can
    carry document ids, and an id can hold a newline or an escape sequence."""
    _prepare_process(list(sys.argv[1:] if argv is None else argv))
    _register()
    try:
        cli.main(args=argv, prog_name="couchfarm", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(ABORTED)
    except ConfigError as exc:
        _fail(CONFIG, f"configuration error: {exc}")
    except Unavailable as exc:  # CouchDB down or unreachable, after the client's retries
        _fail(UNREACHABLE, f"{type(exc).__name__}: {exc}")
    except Unauthorized as exc:  # wrong credentials: never retried (CouchDB locks the account out)
        _fail(CONFIG, f"CouchDB refused the credentials (couch_url, couch_user, couch_password): {exc}")
    except FarmError as exc:
        _fail(FAILED, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        from workers.cli_common import server_failure

        failure = server_failure(exc)
        if failure is None:
            raise
        _fail(*failure)


def _fail(code: int, message: str) -> None:
    click.echo("couchfarm: " + printable(message, keep="\n"), err=True)
    sys.exit(code)
