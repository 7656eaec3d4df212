"""The front end's blueprint, shared by the resource modules that decorate it."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()
