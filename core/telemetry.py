"""Tracing and Application Insights: one span per function, W3C traceparent carried across queues.

`azure-monitor-opentelemetry` is configured only when APPLICATIONINSIGHTS_CONNECTION_STRING is set;
without it the OpenTelemetry API is a no-op (tests install an in-memory exporter instead).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

log = logging.getLogger(__name__)
tracer = trace.get_tracer("loadbay")
_configured = False
# Loadbay's loggers: "loadbay.*", and the module loggers (logging.getLogger(__name__)) of its packages.
ROOT_LOGGER = "loadbay"
PACKAGE_LOGGERS = ("core", "http_api", "queue_workers", "orchestrations")


def configure_telemetry(environ: Mapping[str, str] = os.environ) -> bool:
    """Send traces, metrics and logs to Application Insights if configured; return whether it is."""
    global _configured
    connection_string = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if _configured or not connection_string:
        return _configured
    # Imported here: the exporter is heavy, and local runs without Application Insights skip it.
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=connection_string, logger_name=ROOT_LOGGER)
    # It exports one logger's records; the module loggers are not under "loadbay", so give them its handler.
    handlers = logging.getLogger(ROOT_LOGGER).handlers
    for name in PACKAGE_LOGGERS:
        for handler in handlers:
            logging.getLogger(name).addHandler(handler)
    _configured = True
    return True


def current_traceparent() -> str | None:
    """Return the W3C traceparent of the current span, to put on a queue message."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def function_span(
    name: str, *, traceparent: str | None, kind: SpanKind, attributes: Mapping[str, str | int] | None = None
) -> Iterator[Span]:
    """Run a function invocation inside a span that continues the caller's trace, if any."""
    parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        yield span


def record_span(
    name: str,
    *,
    traceparent: str | None,
    kind: SpanKind,
    attributes: Mapping[str, str | int] | None = None,
    error: BaseException | None = None,
) -> None:
    """Record a span that ends at once, for orchestrators: they yield, so they cannot hold a span open."""
    parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
    span = tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


def mark_failed(span: Span, description: str) -> None:
    """Mark a span failed without an exception (for answers such as HTTP 5xx)."""
    span.set_status(Status(StatusCode.ERROR, description))
