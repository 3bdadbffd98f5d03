"""W3C trace context (``traceparent``) carried from the dispatcher through the task into every
CouchDB request, every log line and every dead letter, so one resolution can be followed across
processes.

The dispatcher starts a trace per batch; the task continues it (a child span); while it runs, the
``current`` context variable holds the traceparent, which the CouchDB transport sends as a header
and the log filter adds to records (``trace_id``). With the OpenTelemetry SDK installed and
``OTEL_EXPORTER_OTLP_ENDPOINT`` set, a command calls :func:`enable_opentelemetry` at start
(workers/cli_common.py) and every :func:`activated` block is also a real span, exported as the
standard ``OTEL_*`` variables configure; otherwise tracing costs a context variable.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import secrets
from collections.abc import Iterator
from typing import Any

_FORMAT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
current: contextvars.ContextVar[str | None] = contextvars.ContextVar("couchfarm_traceparent", default=None)
_tracer: Any = None


def new_traceparent() -> str:
    """A new trace, sampled: ``00-<trace id>-<span id>-01``."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child(traceparent: str | None) -> str:
    """The same trace with a new span id (a new trace when ``traceparent`` is missing or malformed)."""
    match = _FORMAT.match(traceparent or "")
    if not match:
        return new_traceparent()
    return f"00-{match[1]}-{secrets.token_hex(8)}-{match[3]}"


def trace_id(traceparent: str | None) -> str:
    match = _FORMAT.match(traceparent or "")
    return match[1] if match else ""


def headers() -> dict[str, str]:
    """Headers for an outgoing request: the current traceparent, if any (the transport's hook)."""
    tp = current.get()
    return {"traceparent": tp} if tp else {}


@contextlib.contextmanager
def activated(traceparent: str | None, name: str = "couchfarm") -> Iterator[str]:
    """Run the block as a child span of ``traceparent``; yields the child's traceparent."""
    tp = child(traceparent)
    token = current.set(tp)
    try:
        with _otel_span(name, traceparent):
            yield tp
    finally:
        current.reset(token)


def enable_opentelemetry(service: str = "couchfarm", exporter: Any = None) -> bool:
    """Export spans with OpenTelemetry when the SDK is installed: to ``exporter``, or by OTLP over
    HTTP as configured by the standard OTEL_* environment variables. False, and a no-op, when the
    SDK (or, without an exporter, the OTLP exporter package) is missing."""
    global _tracer
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
    except ImportError:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    processor = (
        BatchSpanProcessor if type(exporter).__name__ != "InMemorySpanExporter" else SimpleSpanProcessor
    )
    provider.add_span_processor(processor(exporter))
    _tracer = provider.get_tracer("couchfarm")
    return True


@contextlib.contextmanager
def _otel_span(name: str, parent: str | None) -> Iterator[None]:
    if _tracer is None:
        yield
        return
    from opentelemetry.propagate import extract

    with _tracer.start_as_current_span(name, context=extract({"traceparent": parent or ""})):
        yield


class TraceFilter(logging.Filter):
    """Adds ``trace_id`` to every record made while a trace is active."""

    def filter(self, record: logging.LogRecord) -> bool:
        tp = current.get()
        if tp and not hasattr(record, "trace_id"):
            record.trace_id = trace_id(tp)
        return True
