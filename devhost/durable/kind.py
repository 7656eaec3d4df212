"""Wire Durable Functions into devhost: orchestration/activity triggers and the durableClient binding."""

from __future__ import annotations

from typing import Any, ClassVar

from devhost.bindings import BoundBinding
from devhost.config import ConfigError, Unsupported, resolve_setting_expressions
from devhost.durable.api import DurableApi, client_binding_json
from devhost.durable.engine import Engine
from devhost.durable.options import DurableOptions
from devhost.durable.replay import ENTITIES_UNSUPPORTED
from devhost.invoker import RuntimeFunction
from devhost.loader import Binding
from devhost.runtime import Runtime, TriggerKind

SERVICE = "durable"
DEFAULT_CONNECTION_NAME = "Storage"


class DurableTriggerKind(TriggerKind):
    """Serve `orchestrationTrigger` and `activityTrigger` functions from one task hub in Azure Storage.

    Nothing is created for apps without Durable functions or client bindings: the engine, its storage
    clients and the client endpoints appear with the first one.
    """

    kind = "durable"
    trigger_types = frozenset({"orchestrationTrigger", "activityTrigger", "entityTrigger"})
    # Functions with a durableClient binding call the client endpoints on the HTTP server, bursts included.
    needs_http_in_burst: ClassVar[bool] = True

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._options: DurableOptions | None = None
        self._engine: Engine | None = None
        self.api: DurableApi | None = None
        runtime.services[SERVICE] = self

    @property
    def options(self) -> DurableOptions:
        """host.json extensions.durableTask and the DEVHOST_DURABLE_* settings (read on first use)."""
        if self._options is None:
            self._options = DurableOptions.load(self.runtime.host_config, self.runtime.environ)
        return self._options

    @property
    def engine(self) -> Engine:
        """The task hub's engine (created on first use, with the client endpoints)."""
        if self._engine is None:
            self._engine = Engine(self.runtime, self.options)
            if self.runtime.http is not None:
                connection = self.options.connection or DEFAULT_CONNECTION_NAME
                self.api = DurableApi(self._engine, self.runtime.http, connection)
        return self._engine

    def add(self, function: RuntimeFunction) -> None:
        trigger = function.spec.trigger
        if trigger.type == "entityTrigger":
            raise Unsupported(f"entityTrigger: {ENTITIES_UNSUPPORTED}")
        if trigger.type == "orchestrationTrigger":
            if not hasattr(function.spec.user_function, "orchestrator_function"):
                raise ConfigError(
                    "an orchestrator must be declared with azure-functions-durable's decorators"
                )
            self.engine.orchestrators[str(trigger.get("orchestration") or function.name)] = function
        else:
            self.engine.activities[str(trigger.get("activity") or function.name)] = function
        super().add(function)

    def describe(self, function: RuntimeFunction) -> str:
        trigger = function.spec.trigger
        return f"{function.name}: {trigger.type} (task hub '{self.options.hub_name}')"

    async def start(self) -> None:
        if self._engine is not None:
            await self._engine.start()

    async def is_idle(self) -> bool:
        return True if self._engine is None else await self._engine.is_idle()

    async def stop(self, deadline: float) -> None:
        if self._engine is not None:
            await self._engine.stop(deadline)


class DurableClientBinding(BoundBinding):
    """The `durableClient` input binding: the JSON the SDK builds its DurableOrchestrationClient from."""

    directions = frozenset({"in"})

    def __init__(self, binding: Binding, runtime: Runtime) -> None:
        super().__init__(binding, runtime)
        kind = runtime.services.get(SERVICE)
        if not isinstance(kind, DurableTriggerKind):
            raise ConfigError("durableClient needs devhost's Durable support, which is not loaded")
        hub = binding.get("taskHub")
        if hub and resolve_setting_expressions(str(hub), runtime.environ) != kind.options.hub_name:
            raise Unsupported(
                f"durableClient taskHub {hub!r}: devhost serves only the host.json task hub "
                f"{kind.options.hub_name!r}"
            )
        connection = binding.get("connectionName")
        if connection:
            runtime.storage.connection_string(str(connection))
        kind.engine  # noqa: B018 - creates the engine and the client endpoints
        self.kind = kind

    def prepare(self) -> Any:
        http = self.runtime.http
        if http is None:
            raise RuntimeError("the durableClient binding needs devhost's HTTP server, which is not running")
        connection = self.kind.options.connection or DEFAULT_CONNECTION_NAME
        return client_binding_json(http.base_url, self.kind.options.hub_name, connection)

    async def commit(self, argument: Any, return_value: Any) -> None:
        return None
