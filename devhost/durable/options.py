"""Durable settings: host.json `extensions.durableTask`, and devhost's own DEVHOST_DURABLE_* app settings."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devhost.config import ConfigError, HostConfig, number_setting, resolve_setting_expressions

DEFAULT_HUB = "TestHubName"
LEASE_SETTING = "DEVHOST_DURABLE_LEASE_SECONDS"
POLL_SETTING = "DEVHOST_DURABLE_POLL_SECONDS"
BURST_TIMER_SETTING = "DEVHOST_DURABLE_BURST_TIMER_SECONDS"
# The Azure Storage provider's rule for task hub names (they become table and container names).
_HUB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")


def _lower(section: object, what: str) -> dict[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"host.json {what}: expected an object, got {section!r}")
    return {str(key).lower(): value for key, value in section.items()}


def _count(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key.lower(), default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"host.json extensions.durableTask.{key}: expected a positive integer, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class DurableOptions:
    """What devhost honours of the Durable extension's configuration."""

    hub_name: str = DEFAULT_HUB
    connection: str | None = None
    max_activities: int = 10 * (os.cpu_count() or 1)
    max_orchestrators: int = 10 * (os.cpu_count() or 1)
    lease_seconds: float = 10.0
    poll_seconds: float = 1.0
    burst_timer_seconds: float = 10.0

    @classmethod
    def load(cls, host_config: HostConfig, environ: Mapping[str, str]) -> DurableOptions:
        """Read host.json extensions.durableTask (any key case) and the DEVHOST_DURABLE_* settings."""
        raw = host_config.raw or {}
        extensions = _lower(raw.get("extensions"), "extensions")
        durable = _lower(extensions.get("durabletask"), "extensions.durableTask")
        provider = _lower(durable.get("storageprovider"), "extensions.durableTask.storageProvider")
        hub = resolve_setting_expressions(str(durable.get("hubname") or DEFAULT_HUB), environ)
        if not _HUB_NAME.match(hub):
            raise ConfigError(
                f"host.json extensions.durableTask.hubName {hub!r}: use 3-45 letters and digits, starting "
                "with a letter (it names the task hub's table and container)"
            )
        default = cls()
        connection = provider.get("connectionstringname") or provider.get("connectionname")
        return cls(
            hub_name=hub,
            connection=str(connection) if connection else None,
            max_activities=_count(durable, "maxConcurrentActivityFunctions", default.max_activities),
            max_orchestrators=_count(
                durable, "maxConcurrentOrchestratorFunctions", default.max_orchestrators
            ),
            lease_seconds=number_setting(environ, LEASE_SETTING, default.lease_seconds, minimum=0.5),
            poll_seconds=number_setting(environ, POLL_SETTING, default.poll_seconds, minimum=0.05),
            burst_timer_seconds=number_setting(
                environ, BURST_TIMER_SETTING, default.burst_timer_seconds, minimum=0.0
            ),
        )
