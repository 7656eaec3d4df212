"""The orchestrations' blueprint, shared by the modules that decorate it."""

from __future__ import annotations

import azure.durable_functions as df

bp = df.Blueprint()
