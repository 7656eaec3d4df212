"""Read host.json and local.settings.json the way the Functions host and Core Tools do."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ROUTE_PREFIX = "api"
# The Functions host caps request bodies at 100 MiB (Kestrel's MaxRequestBodySize in the host).
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
# The host receives queue messages invisible for 10 minutes and renews that lease while it works.
DEFAULT_QUEUE_LEASE_SECONDS = 600.0
MIN_POLLING_INTERVAL = 0.1

FUNCTION_KEY_SETTING = "DEVHOST_FUNCTION_KEY"
MASTER_KEY_SETTING = "DEVHOST_MASTER_KEY"
MAX_BODY_SETTING = "DEVHOST_MAX_REQUEST_BODY_BYTES"
QUEUE_LEASE_SETTING = "DEVHOST_QUEUE_LEASE_SECONDS"
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"
SCRIPT_FILE_SETTING = "PYTHON_SCRIPT_FILE_NAME"
THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")
_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")


class ConfigError(ValueError):
    """The app's configuration (host.json, local settings, bindings) cannot be used."""


class Unsupported(ConfigError):
    """A function uses a trigger, binding or option devhost does not serve (Azure would)."""


def parse_timespan(text: str, *, what: str) -> float:
    """Parse a .NET TimeSpan string such as "00:00:30" or "1.02:00:00" into seconds."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ConfigError(f"{what}: {text!r} is not a TimeSpan like 'hh:mm:ss'")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise ConfigError(f"{what}: {text!r} has an hour, minute or second out of range")
    return total + (float(f"0.{fraction}") if fraction else 0.0)


def parse_duration(value: object, *, what: str, allow_milliseconds: bool) -> float:
    """Parse a host.json duration: a TimeSpan string, or milliseconds where the host accepts a number."""
    if isinstance(value, str):
        return parse_timespan(value, what=what)
    if allow_milliseconds and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0
    raise ConfigError(f"{what}: expected a TimeSpan string like '00:00:30', got {value!r}")


def resolve_setting_expressions(value: str, environ: Mapping[str, str]) -> str:
    """Replace `%Name%` binding expressions with app settings, as the host does for binding properties."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(f"binding expression %{name}% names an app setting that is not set")
        return environ[name]

    return _SETTING_EXPRESSION.sub(lookup, value)


def _lower_keys(section: object) -> dict[str, Any]:
    # The host binds host.json with .NET configuration, whose keys are case-insensitive.
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"host.json: expected an object, got {section!r}")
    return {str(key).lower(): value for key, value in section.items()}


def _int_option(options: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key.lower(), default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"host.json extensions.queues.{key}: expected an integer {low}..{high}, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class QueueOptions:
    """host.json extensions.queues, with the host's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_section(cls, section: object) -> QueueOptions:
        """Build the options from the `extensions.queues` object (or None)."""
        options = _lower_keys(section)
        batch_size = _int_option(options, "batchSize", 16, 1, 32)
        threshold = _int_option(options, "newBatchThreshold", batch_size // 2, 0, 10_000)
        polling = parse_duration(
            options.get("maxpollinginterval", "00:01:00"),
            what="host.json extensions.queues.maxPollingInterval",
            allow_milliseconds=True,
        )
        visibility = parse_duration(
            options.get("visibilitytimeout", "00:00:00"),
            what="host.json extensions.queues.visibilityTimeout",
            allow_milliseconds=False,
        )
        encoding = str(options.get("messageencoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ConfigError(
                f"host.json extensions.queues.messageEncoding: expected base64 or none, got {encoding!r}"
            )
        return cls(
            batch_size=batch_size,
            new_batch_threshold=threshold,
            max_polling_interval=max(polling, MIN_POLLING_INTERVAL),
            visibility_timeout=visibility,
            max_dequeue_count=_int_option(options, "maxDequeueCount", 5, 1, 10_000),
            message_encoding=encoding,
        )


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json that devhost honours."""

    route_prefix: str = DEFAULT_ROUTE_PREFIX
    queues: QueueOptions = QueueOptions()
    raw: Mapping[str, Any] | None = None

    @classmethod
    def load(cls, app_dir: Path) -> HostConfig:
        """Read DIR/host.json (missing file: the host's defaults)."""
        path = app_dir / "host.json"
        if not path.exists():
            return cls()
        raw = _read_json(path)
        version = raw.get("version")
        if version != "2.0":
            raise ConfigError(f'{path}: "version" must be "2.0" (got {version!r})')
        extensions = _lower_keys(raw.get("extensions"))
        http = _lower_keys(extensions.get("http"))
        prefix = http.get("routeprefix", DEFAULT_ROUTE_PREFIX)
        if not isinstance(prefix, str):
            raise ConfigError(f"{path}: extensions.http.routePrefix must be a string")
        return cls(
            route_prefix=prefix.strip("/"),
            queues=QueueOptions.from_section(extensions.get("queues")),
            raw=raw,
        )


@dataclass(frozen=True)
class LocalSettings:
    """DIR/local.settings.json: app settings (`Values`) and Core Tools' `Host` section."""

    values: Mapping[str, str]
    local_http_port: int | None = None

    @classmethod
    def load(cls, app_dir: Path) -> LocalSettings:
        """Read DIR/local.settings.json (missing file: no settings)."""
        path = app_dir / "local.settings.json"
        if not path.exists():
            return cls(values={})
        raw = _read_json(path)
        if raw.get("IsEncrypted") is True:
            raise ConfigError(f"{path}: encrypted settings are not supported; decrypt them first")
        values = raw.get("Values") or {}
        if not isinstance(values, dict):
            raise ConfigError(f'{path}: "Values" must be an object')
        host_section = raw.get("Host") or {}
        port = host_section.get("LocalHttpPort") if isinstance(host_section, dict) else None
        return cls(
            values={str(key): _setting_text(value) for key, value in values.items()},
            local_http_port=int(port) if port is not None else None,
        )

    def environment(self, environ: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
        """Merge settings: local Values < the process environment < explicit overrides (as Core Tools)."""
        merged = dict(self.values)
        merged.update(environ)
        merged.update(overrides)
        return merged


@dataclass(frozen=True)
class DevhostSettings:
    """devhost's own settings, read from app settings (local.settings.json Values or the environment)."""

    function_key: str | None = None
    master_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    queue_lease_seconds: float = DEFAULT_QUEUE_LEASE_SECONDS
    host_id: str = "devhost"
    thread_count: int = min(32, (os.cpu_count() or 1) + 4)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DevhostSettings:
        """Read and validate the DEVHOST_* and worker settings."""
        default = cls()
        return cls(
            function_key=environ.get(FUNCTION_KEY_SETTING) or None,
            master_key=environ.get(MASTER_KEY_SETTING) or None,
            max_body_bytes=int(number_setting(environ, MAX_BODY_SETTING, default.max_body_bytes, minimum=1)),
            queue_lease_seconds=number_setting(
                environ, QUEUE_LEASE_SETTING, default.queue_lease_seconds, minimum=1
            ),
            host_id=environ.get(HOST_ID_SETTING) or default.host_id,
            thread_count=int(number_setting(environ, THREAD_COUNT_SETTING, default.thread_count, minimum=1)),
        )


def number_setting(environ: Mapping[str, str], key: str, default: float, *, minimum: float) -> float:
    """Read a numeric app setting, refusing text, NaN/infinity and values below `minimum`."""
    text = environ.get(key)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"app setting {key}: expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"app setting {key}: expected a number >= {minimum}, got {text!r}")
    return value


def _setting_text(value: object) -> str:
    # Core Tools passes Values through as strings; JSON booleans become "true"/"false" like .NET does.
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: files saved by Windows editors often start with a BOM.
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read JSON ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data
