"""The workers' blueprint, shared by the modules that decorate it."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()
