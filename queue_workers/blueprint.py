"""The workers' blueprint, shared by the modules that decorate it."""

from __future__ import annotations

import azure.durable_functions as df

# Durable, because the import worker uses the durable client binding to start orchestrations.
bp = df.Blueprint()
