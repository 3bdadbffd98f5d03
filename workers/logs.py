"""Logging for every couchfarm process: JSON lines for machines, a readable format for terminals.

Structured fields passed with ``extra=`` (db, doc_id, revs, outcome, correlation_id, traceparent…)
appear as JSON members or ``key=value`` pairs. Every handler carries the redacting filter, so no
password, token or Authorization value reaches a log line. The console format escapes control
characters in the message and the fields (``couchfarm.console.printable``): a document id with a
newline or an ANSI escape must not forge a line or repaint the terminal. JSON escapes them itself.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from couchfarm.console import printable
from couchfarm.redact import RedactingFilter
from couchfarm.trace import TraceFilter

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_text:
            out["exc"] = record.exc_text
        elif record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, sort_keys=False)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={printable(v)}" for k, v in _fields(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {printable(record.getMessage())}" + (
            f"  {extra}" if extra else ""
        )
        if record.exc_text:
            line += "\n" + record.exc_text
        elif record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def make_handler(fmt: str = "console", stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(TraceFilter())
    handler.addFilter(FARM_FILTER)
    handler.addFilter(RedactingFilter())
    return handler


def setup_logging(fmt: str = "console", level: str = "INFO") -> None:
    """Replace the root handlers with one redacting handler in the chosen format."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_couchfarm", False):
            root.removeHandler(h)
    handler = make_handler(fmt)
    handler._couchfarm = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("urllib3", "kombu", "amqp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class FarmFilter(logging.Filter):
    """Adds ``farm`` to every record, so the lines of farms that share a log pipeline stay apart."""

    farm = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if self.farm and not hasattr(record, "farm"):
            record.farm = self.farm
        return True


FARM_FILTER = FarmFilter()


def tag_process(settings: Any) -> None:
    """This process works for ``settings.farm``: its log lines and metrics say so."""
    from couchfarm import metrics

    FARM_FILTER.farm = str(settings.farm or "")
    metrics.FARM[0] = FARM_FILTER.farm or "-"
