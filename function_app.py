"""Loadbay's Function App: composes the blueprints and nothing else."""

import azure.durable_functions as df
import azure.functions as func

import http_api
import orchestrations
import queue_workers
from core.runtime import check_settings
from core.telemetry import configure_telemetry

check_settings()
configure_telemetry()

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_api.bp)
app.register_functions(queue_workers.bp)
app.register_functions(orchestrations.bp)
