"""What the host shares with trigger kinds and bindings, and the interface a trigger kind implements."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from devhost.config import DevhostSettings, HostConfig
from devhost.invoker import Invoker, RuntimeFunction
from devhost.storage import StorageAccounts

if TYPE_CHECKING:
    from devhost.http import HttpServer


@dataclass
class Runtime:
    """Per-run state: settings, storage clients, the invoker, and the HTTP server when one runs."""

    app_dir: Path
    environ: Mapping[str, str]
    host_config: HostConfig
    settings: DevhostSettings
    storage: StorageAccounts
    invoker: Invoker
    burst: bool = False
    http: HttpServer | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Objects trigger kinds share with their bindings (the Durable kind registers itself as "durable").
    services: dict[str, Any] = field(default_factory=dict)


class TriggerKind(ABC):
    """One kind of trigger (http, queue, timer, ...): accepts its functions and runs their listeners.

    New kinds (Durable orchestrations and activities) subclass this and are added to `host.TRIGGER_KINDS`;
    new non-trigger bindings (e.g. durableClient) go in `bindings.BINDING_PROVIDERS`. A kind that serves
    endpoints registers them with `runtime.http.add_route` in `__init__` or `add` (before the server
    starts), and sets `needs_http_in_burst` when its functions need the server during a burst.
    """

    kind: ClassVar[str]
    trigger_types: ClassVar[frozenset[str]]
    # Non-trigger binding types this kind serves itself (the HTTP kind serves the `http` output).
    served_bindings: ClassVar[frozenset[str]] = frozenset()
    needs_http_in_burst: ClassVar[bool] = False

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.functions: list[RuntimeFunction] = []

    def add(self, function: RuntimeFunction) -> None:
        """Accept a function; raise ConfigError when its trigger cannot be served."""
        self.functions.append(function)

    @abstractmethod
    def describe(self, function: RuntimeFunction) -> str:
        """Return the start-up line for one function, as Core Tools prints it."""

    @abstractmethod
    async def start(self) -> None:
        """Start listening (in burst mode: do the one-off work and start draining)."""

    async def is_idle(self) -> bool:
        """Say whether nothing is running or waiting (burst mode ends when every kind is idle)."""
        return True

    @abstractmethod
    async def stop(self, deadline: float) -> None:
        """Stop taking work, let in-flight work finish until the loop time `deadline`, then abandon it."""


def remaining(deadline: float) -> float:
    """Seconds left until a loop-time deadline (never negative)."""
    return max(0.0, deadline - asyncio.get_running_loop().time())
