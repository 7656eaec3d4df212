"""The host: load the app, wire functions to trigger kinds, run (serving or burst) and stop gracefully."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType

from devhost.bindings import BINDING_PROVIDERS, BoundBinding
from devhost.config import (
    SCRIPT_FILE_SETTING,
    ConfigError,
    DevhostSettings,
    HostConfig,
    LocalSettings,
    Unsupported,
)
from devhost.durable import DurableClientBinding, DurableTriggerKind
from devhost.http import HttpServer, HttpTriggerKind
from devhost.invoker import Invoker, RuntimeFunction
from devhost.loader import DEFAULT_SCRIPT_FILE, FunctionSpec, LoadedApp, load_app, missing_parameters
from devhost.queues import QueueTriggerKind
from devhost.runtime import Runtime, TriggerKind
from devhost.storage import StorageAccounts
from devhost.timers import TimerTriggerKind

logger = logging.getLogger("devhost")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7071
DEFAULT_GRACE_SECONDS = 10.0
# Trigger kinds in start order.
TRIGGER_KINDS: list[type[TriggerKind]] = [
    HttpTriggerKind,
    QueueTriggerKind,
    TimerTriggerKind,
    DurableTriggerKind,
]
BINDING_PROVIDERS["durableClient"] = DurableClientBinding
# Types devhost knows it does not serve, with the reason given at start-up.
NOT_YET_SUPPORTED = {
    "blob": "blob bindings are not supported by devhost",
    "blobTrigger": "blob triggers are not supported by devhost",
}
_BURST_CHECK_SECONDS = 0.1


@dataclass(frozen=True)
class SkippedFunction:
    """A function devhost did not load, and why."""

    name: str
    reason: str
    unsupported: bool


@dataclass(frozen=True)
class BurstResult:
    """What a burst run did."""

    invocations: int
    failures: int


class Host:
    """A loaded function app; start it serving (`serving`, `start`/`stop`) or drain it once (`run_burst`)."""

    def __init__(
        self,
        app: LoadedApp,
        environ: dict[str, str],
        host_config: HostConfig,
        local_settings: LocalSettings,
        previous_environ: dict[str, str | None],
        added_to_path: bool,
    ) -> None:
        self.app = app
        self.environ = environ
        self.host_config = host_config
        self.local_settings = local_settings
        self.settings = DevhostSettings.from_env(environ)
        self.skipped: list[SkippedFunction] = []
        self.runtime: Runtime | None = None
        self.kinds: list[TriggerKind] = []
        self._previous_environ = previous_environ
        self._added_to_path = added_to_path
        self._grace = DEFAULT_GRACE_SECONDS

    @classmethod
    def load(cls, app_dir: Path | str, *, environ_overrides: Mapping[str, str] | None = None) -> Host:
        """Load settings into os.environ, read host.json and import the app (`close()` undoes it).

        The process environment wins over local.settings.json Values (as in Core Tools), and
        `environ_overrides` win over both (tests inject the Azurite connection string this way).
        """
        directory = Path(app_dir).resolve()
        local_settings = LocalSettings.load(directory)
        host_config = HostConfig.load(directory)
        environ = local_settings.environment(os.environ, environ_overrides or {})
        previous = _apply_environ(environ)
        added_to_path = str(directory) not in sys.path
        try:
            DevhostSettings.from_env(environ)
            app = load_app(directory, environ.get(SCRIPT_FILE_SETTING) or DEFAULT_SCRIPT_FILE)
        except BaseException:
            _restore_environ(previous)
            if added_to_path and str(directory) in sys.path:
                sys.path.remove(str(directory))
            raise
        return cls(app, environ, host_config, local_settings, previous, added_to_path)

    @property
    def module(self) -> ModuleType:
        """The imported function_app module (tests read state the sample apps keep there)."""
        return self.app.module

    @property
    def functions(self) -> tuple[FunctionSpec, ...]:
        """Every function the app defines, loaded or not."""
        return self.app.functions

    @property
    def base_url(self) -> str:
        """The HTTP server's URL (only while serving)."""
        if self.runtime is None or self.runtime.http is None:
            raise RuntimeError("the host is not serving HTTP")
        return self.runtime.http.base_url

    async def start(
        self,
        *,
        burst: bool = False,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        serve_http: bool | None = None,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        """Start every listener (and the HTTP server unless in burst mode) and log the function list."""
        if self.runtime is not None:
            raise RuntimeError("the host is already running")
        self._grace = grace_seconds
        runtime = Runtime(
            app_dir=self.app.app_dir,
            environ=self.environ,
            host_config=self.host_config,
            settings=self.settings,
            storage=StorageAccounts(self.environ),
            invoker=Invoker(self.app.app_dir, self.settings.thread_count),
            burst=burst,
        )
        chosen = port if port is not None else (self.local_settings.local_http_port or DEFAULT_PORT)
        if burst and port is None:
            chosen = 0  # a burst serves HTTP only for system endpoints (Durable client): any free port
        # Created before wiring so kinds can add system routes; it listens only if the run serves HTTP.
        runtime.http = HttpServer(host, chosen, shutdown_timeout=grace_seconds)
        self.runtime = runtime
        try:
            self.kinds = [kind(runtime) for kind in TRIGGER_KINDS]
            loaded = self._wire_functions(runtime)
            if serve_http is None:
                needed = any(kind.needs_http_in_burst and kind.functions for kind in self.kinds)
                serve_http = not burst or needed
            if serve_http:
                await runtime.http.start()
            else:
                runtime.http = None
            self._log_functions(loaded)
            for kind in self.kinds:
                await kind.start()
        except BaseException:
            await self._shutdown(asyncio.get_running_loop().time())
            raise
        logger.info("Host started%s", " (burst)" if burst else "")

    def _wire_functions(self, runtime: Runtime) -> list[tuple[TriggerKind, RuntimeFunction]]:
        by_trigger = {trigger: kind for kind in self.kinds for trigger in kind.trigger_types}
        loaded: list[tuple[TriggerKind, RuntimeFunction]] = []
        self.skipped = []
        for spec in self.app.functions:
            try:
                kind, function = self._wire(spec, runtime, by_trigger)
            except Unsupported as unsupported:
                self.skipped.append(SkippedFunction(spec.name, str(unsupported), unsupported=True))
                continue
            except ConfigError as error:
                logger.error("Function '%s' cannot be loaded: %s", spec.name, error)
                self.skipped.append(SkippedFunction(spec.name, str(error), unsupported=False))
                continue
            loaded.append((kind, function))
        not_served = [item for item in self.skipped if item.unsupported]
        if not_served:
            logger.warning(
                "Not loaded (unsupported by devhost): %s",
                "; ".join(f"{item.name} ({item.reason})" for item in not_served),
            )
        return loaded

    @staticmethod
    def _wire(
        spec: FunctionSpec, runtime: Runtime, by_trigger: Mapping[str, TriggerKind]
    ) -> tuple[TriggerKind, RuntimeFunction]:
        kind = by_trigger.get(spec.trigger.type)
        if kind is None:
            raise Unsupported(_why_unsupported(spec.trigger.type, trigger=True))
        outputs: list[BoundBinding] = []
        for binding in spec.bindings:
            if binding.type in kind.served_bindings:
                continue
            provider = BINDING_PROVIDERS.get(binding.type)
            if provider is None:
                raise Unsupported(_why_unsupported(binding.type, trigger=False))
            outputs.append(provider(binding, runtime))
        missing = missing_parameters(spec)
        if missing:
            raise ConfigError(f"the Python function has no parameter for binding(s) {', '.join(missing)}")
        function = RuntimeFunction(spec, tuple(outputs))
        kind.add(function)
        return kind, function

    def _log_functions(self, loaded: list[tuple[TriggerKind, RuntimeFunction]]) -> None:
        logger.info("Functions:")
        for kind, function in loaded:
            logger.info("    %s", kind.describe(function))

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stop taking work, let in-flight invocations finish within the grace period, close everything."""
        if self.runtime is None:
            return
        grace = self._grace if grace_seconds is None else grace_seconds
        await self._shutdown(asyncio.get_running_loop().time() + grace)
        logger.info("Host stopped")

    async def _shutdown(self, deadline: float) -> None:
        runtime = self.runtime
        if runtime is None:
            return
        runtime.stopping.set()
        stopping = [kind.stop(deadline) for kind in self.kinds]
        if runtime.http is not None:
            await runtime.http.stop_listening()
            stopping.append(runtime.http.close())
        try:
            await asyncio.gather(*stopping)
        finally:
            runtime.invoker.shutdown()
            await runtime.storage.close()
            self.runtime = None
            self.kinds = []

    @asynccontextmanager
    async def serving(
        self, *, host: str = DEFAULT_HOST, port: int = 0, grace_seconds: float = 5.0
    ) -> AsyncIterator[Host]:
        """Serve (HTTP and listeners) inside an `async with`; port 0 picks a free port (see `base_url`)."""
        await self.start(host=host, port=port, grace_seconds=grace_seconds)
        try:
            yield self
        finally:
            await self.stop()

    async def run_burst(self, timeout: float | None = None, *, grace_seconds: float = 5.0) -> BurstResult:
        """Run due and runOnStartup timers, drain every trigger queue (retries and new messages too), stop."""
        await self.start(burst=True, grace_seconds=grace_seconds)
        runtime = self.runtime
        assert runtime is not None
        try:
            async with asyncio.timeout(timeout):
                await self._wait_until_idle(runtime)
        finally:
            await self.stop()
        return BurstResult(runtime.invoker.started, runtime.invoker.failed)

    def run_burst_sync(self, timeout: float | None = None) -> BurstResult:
        """`run_burst` on a fresh event loop, for synchronous callers and tests."""
        return asyncio.run(self.run_burst(timeout))

    async def _wait_until_idle(self, runtime: Runtime) -> None:
        # Two consecutive quiet checks with no invocation starting in between: nothing is left anywhere.
        quiet_checks = 0
        while quiet_checks < 2:
            await asyncio.sleep(_BURST_CHECK_SECONDS)
            started = runtime.invoker.started
            idle = [await kind.is_idle() for kind in self.kinds]
            quiet = all(idle) and runtime.invoker.running == 0 and runtime.invoker.started == started
            quiet_checks = quiet_checks + 1 if quiet else 0

    def close(self) -> None:
        """Restore the process environment and sys.path as they were before `load`."""
        _restore_environ(self._previous_environ)
        self._previous_environ = {}
        directory = str(self.app.app_dir)
        if self._added_to_path and directory in sys.path:
            sys.path.remove(directory)
        self._added_to_path = False

    def __enter__(self) -> Host:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _why_unsupported(binding_type: str, *, trigger: bool) -> str:
    note = NOT_YET_SUPPORTED.get(binding_type)
    what = "trigger" if trigger else "binding"
    return (
        f"{binding_type}: {note}" if note else f"{binding_type}: this {what} type is not supported by devhost"
    )


def _apply_environ(environ: Mapping[str, str]) -> dict[str, str | None]:
    previous: dict[str, str | None] = {}
    for key, value in environ.items():
        if os.environ.get(key) != value:
            previous[key] = os.environ.get(key)
            os.environ[key] = value
    return previous


def _restore_environ(previous: Mapping[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
