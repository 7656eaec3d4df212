"""Non-trigger bindings devhost serves: queue and table outputs (no blob bindings, no input bindings)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import azure.functions as func
from azure.core.exceptions import ResourceExistsError

from devhost.config import ConfigError, Unsupported, resolve_setting_expressions
from devhost.loader import Binding

if TYPE_CHECKING:
    from devhost.runtime import Runtime

Value = TypeVar("Value")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")


class OutValue(func.Out[Value]):
    """The `func.Out` the worker passes for an output binding."""

    def __init__(self) -> None:
        self._value: Value | None = None

    def set(self, val: Value) -> None:
        self._value = val

    def get(self) -> Value:
        return self._value  # type: ignore[return-value]


def encode_queue_message(body: bytes, encoding: str) -> str:
    """Encode a message body for the queue per host.json messageEncoding (base64 by default)."""
    if encoding == "base64":
        return base64.b64encode(body).decode("ascii")
    return body.decode("utf-8")


def decode_queue_message(text: str, encoding: str) -> bytes:
    """Decode a raw queue message; raise ValueError when base64 is expected and the text is not."""
    if encoding == "base64":
        return base64.b64decode(text.encode("ascii"), validate=True)
    return text.encode("utf-8")


def queue_name(binding: Binding, runtime: Runtime) -> str:
    """Resolve and validate a binding's queueName (`%setting%` expressions resolve; `{...}` ones do not)."""
    raw = str(binding.get("queueName") or "")
    name = resolve_setting_expressions(raw, runtime.environ)
    if "{" in name:
        raise ConfigError(f"queueName {raw!r}: devhost does not support {{...}} binding expressions")
    if not _QUEUE_NAME.match(name):
        raise ConfigError(f"queueName {name!r}: must be 3-63 lowercase letters, digits and single hyphens")
    return name


class BoundBinding(ABC):
    """One non-trigger binding of one function, ready to take part in invocations."""

    directions: frozenset[str] = frozenset({"out"})

    def __init__(self, binding: Binding, runtime: Runtime) -> None:
        if binding.direction not in self.directions:
            raise Unsupported(
                f"{binding.type} bindings with direction {binding.direction!r} are not supported"
            )
        self.binding = binding
        self.name = binding.name
        self.runtime = runtime

    def prepare(self) -> Any:
        """Return this invocation's argument (an Out for output bindings)."""
        return OutValue[Any]()

    @abstractmethod
    async def commit(self, argument: Any, return_value: Any) -> None:
        """Write the output after the function succeeded."""

    def output_value(self, argument: Any, return_value: Any) -> Any:
        """Pick the value to write: the return value for `$return`, else what the function set."""
        if self.name == "$return":
            return return_value
        return argument.get() if isinstance(argument, func.Out) else None


def _message_bodies(value: Any) -> list[bytes]:
    # Mirrors azure.functions.queue.QueueMessageOutConverter: str, bytes, QueueMessage or a list of them.
    if value is None:
        return []
    if isinstance(value, str):
        return [value.encode("utf-8")]
    if isinstance(value, bytes | bytearray):
        return [bytes(value)]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, Iterable) and not isinstance(value, dict):
        return [body for item in value for body in _message_bodies(item)]
    raise TypeError(
        f"a queue output takes str, bytes, QueueMessage or a list of them, not {type(value).__name__}"
    )


class QueueOutput(BoundBinding):
    """`type: queue` output: each value becomes one message, encoded per host.json messageEncoding."""

    def __init__(self, binding: Binding, runtime: Runtime) -> None:
        super().__init__(binding, runtime)
        self.queue_name = queue_name(binding, runtime)
        self.connection = binding.get("connection")
        runtime.storage.connection_string(self.connection)

    async def commit(self, argument: Any, return_value: Any) -> None:
        bodies = _message_bodies(self.output_value(argument, return_value))
        if not bodies:
            return
        client = await self.runtime.storage.ensure_queue(self.connection, self.queue_name)
        encoding = self.runtime.host_config.queues.message_encoding
        for body in bodies:
            await client.send_message(encode_queue_message(body, encoding))


class TableOutput(BoundBinding):
    """`type: table` output: a JSON object (or list) of entities inserted into a table created if missing."""

    def __init__(self, binding: Binding, runtime: Runtime) -> None:
        super().__init__(binding, runtime)
        self.table_name = resolve_setting_expressions(str(binding.get("tableName") or ""), runtime.environ)
        if not _TABLE_NAME.match(self.table_name):
            raise ConfigError(
                f"tableName {self.table_name!r}: must be 3-63 letters or digits, starting with a letter"
            )
        self.connection = binding.get("connection")
        self.partition_key = binding.get("partitionKey")
        self.row_key = binding.get("rowKey")
        runtime.storage.connection_string(self.connection)

    def entities(self, value: Any) -> list[dict[str, Any]]:
        """Turn the output value into entities, filling keys given on the binding."""
        if value is None:
            return []
        parsed = json.loads(value) if isinstance(value, str | bytes) else value
        items = parsed if isinstance(parsed, list) else [parsed]
        entities = []
        for item in items:
            if not isinstance(item, dict):
                raise TypeError("a table output takes a JSON object or a list of objects")
            entity = dict(item)
            if self.partition_key is not None:
                entity.setdefault("PartitionKey", self.partition_key)
            if self.row_key is not None:
                entity.setdefault("RowKey", self.row_key)
            if "PartitionKey" not in entity or "RowKey" not in entity:
                raise ValueError("a table output entity needs PartitionKey and RowKey")
            entities.append(entity)
        return entities

    async def commit(self, argument: Any, return_value: Any) -> None:
        entities = self.entities(self.output_value(argument, return_value))
        if not entities:
            return
        service = self.runtime.storage.table_service(self.connection)
        with contextlib.suppress(ResourceExistsError):
            await service.create_table(self.table_name)
        client = service.get_table_client(self.table_name)
        for entity in entities:
            await client.create_entity(entity)


BindingFactory = Callable[[Binding, "Runtime"], BoundBinding]

# Binding types devhost serves, by function.json type; a later kind adds e.g. "durableClient".
BINDING_PROVIDERS: dict[str, BindingFactory] = {
    "queue": QueueOutput,
    "table": TableOutput,
}
