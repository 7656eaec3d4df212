"""Application Insights through OpenTelemetry, switched on only when a connection string is set."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
_configured = False


def configure_telemetry() -> bool:
    """Send traces, metrics and logs to Application Insights if configured; return whether it is."""
    global _configured
    connection_string = os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if _configured or not connection_string:
        return _configured
    # Imported here: the exporter is heavy, and local runs without Application Insights skip it.
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=connection_string, logger_name="loadbay")
    _configured = True
    return True
