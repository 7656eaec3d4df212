"""The process-wide settings and storage clients, built once on first use and then reused."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

from core.settings import Settings
from core.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """What every handler needs: validated settings and connected storage."""

    settings: Settings
    storage: Storage


def check_settings() -> Settings:
    """Validate the settings when the app loads, so a bad key stops start-up with a clear message."""
    return Settings.from_env(os.environ)


@functools.cache
def runtime() -> Runtime:
    """Read settings from the environment, connect storage and create missing resources, once."""
    settings = Settings.from_env(os.environ)
    storage = Storage.connect(settings.storage)
    storage.ensure_resources()
    log.info("Loadbay storage ready (identity-based: %s)", settings.storage.uses_identity)
    return Runtime(settings=settings, storage=storage)
