"""Call user functions the way the Python worker does, time them and log one line per invocation."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import azure.functions as func
from azure.functions._abc import RetryContext, RpcException, TraceContext

from devhost.loader import FunctionSpec
from devhost.threads import DaemonThreadPool

if TYPE_CHECKING:
    from devhost.bindings import BoundBinding

logger = logging.getLogger("devhost")
_DEVHOST_DIR = str(Path(__file__).resolve().parent)


class _TraceContext(TraceContext):
    def __init__(self, trace_parent: str) -> None:
        self._trace_parent = trace_parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> RpcException:
        raise AttributeError("devhost does not run retry policies, so there is no retry exception")


class InvocationContext(func.Context):
    """The `context` argument the worker passes to functions that ask for one."""

    def __init__(self, function_name: str, invocation_id: str, directory: Path, trace_parent: str) -> None:
        self._function_name = function_name
        self._invocation_id = invocation_id
        self._directory = str(directory)
        self._trace = _TraceContext(trace_parent)
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> RetryContext:
        return _RetryContext()


def new_trace_parent() -> str:
    """Make a fresh W3C traceparent, as the host does when the trigger carries none."""
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


@dataclass(frozen=True)
class RuntimeFunction:
    """A loaded function together with its bound non-trigger bindings."""

    spec: FunctionSpec
    outputs: tuple[BoundBinding, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class InvocationResult:
    """How an invocation ended."""

    invocation_id: str
    value: Any
    error: BaseException | None
    duration_ms: float

    @property
    def succeeded(self) -> bool:
        return self.error is None


class Invoker:
    """Run invocations: sync functions on the daemon thread pool, async ones on the event loop."""

    def __init__(self, app_dir: Path, thread_count: int) -> None:
        self._app_dir = app_dir
        self._pool = DaemonThreadPool(thread_count)
        self.started = 0
        self.running = 0
        self.failed = 0

    async def invoke(
        self,
        function: RuntimeFunction,
        kind: str,
        arguments: Mapping[str, Any],
        *,
        detail: Sequence[str] = (),
        trace_parent: str | None = None,
    ) -> InvocationResult:
        """Invoke once, commit output bindings on success, and log the outcome."""
        invocation_id = str(uuid.uuid4())
        self.started += 1
        self.running += 1
        begun = time.perf_counter()
        value: Any = None
        error: BaseException | None = None
        try:
            value = await self._call(function, invocation_id, arguments, trace_parent)
        except asyncio.CancelledError as cancelled:
            error = cancelled
            raise
        # The host treats anything user code raises as a failed invocation, never as a host failure.
        except Exception as raised:  # noqa: BLE001
            error = raised
            self.failed += 1
        finally:
            self.running -= 1
            duration_ms = (time.perf_counter() - begun) * 1000
            _log_invocation(function.name, kind, duration_ms, error, [f"id={invocation_id}", *detail])
        return InvocationResult(invocation_id, value, error, duration_ms)

    async def _call(
        self,
        function: RuntimeFunction,
        invocation_id: str,
        arguments: Mapping[str, Any],
        trace_parent: str | None,
    ) -> Any:
        spec = function.spec
        kwargs = dict(arguments)
        prepared = {binding.name: binding.prepare() for binding in function.outputs}
        kwargs.update({name: value for name, value in prepared.items() if name != "$return"})
        if "context" in spec.parameters and "context" not in kwargs:
            kwargs["context"] = InvocationContext(
                spec.name, invocation_id, self._app_dir, trace_parent or new_trace_parent()
            )
        if not spec.takes_any_keyword:
            kwargs = {name: value for name, value in kwargs.items() if name in spec.parameters}
        if spec.is_async:
            value = await spec.user_function(**kwargs)
        else:
            value = await asyncio.wrap_future(self._pool.submit(spec.user_function, **kwargs))
        # Outputs are written only after the function succeeded, as the host does.
        for binding in function.outputs:
            await binding.commit(prepared[binding.name], value)
        return value

    def shutdown(self) -> None:
        """Release the thread pool."""
        self._pool.shutdown()


def _log_invocation(
    name: str, kind: str, duration_ms: float, error: BaseException | None, detail: list[str]
) -> None:
    if error is None:
        logger.info("Executed '%s' (%s, %.1f ms, Succeeded, %s)", name, kind, duration_ms, ", ".join(detail))
    elif isinstance(error, asyncio.CancelledError):
        logger.warning(
            "Executed '%s' (%s, %.1f ms, Cancelled, %s)", name, kind, duration_ms, ", ".join(detail)
        )
    else:
        logger.error(
            "Executed '%s' (%s, %.1f ms, Failed: %s, %s)",
            name, kind, duration_ms, type(error).__name__, ", ".join(detail),
            exc_info=(type(error), error, _user_frames(error.__traceback__)),
        )  # fmt: skip


def _user_frames(traceback: TracebackType | None) -> TracebackType | None:
    """Drop devhost's own frames from the front of a traceback, so the log shows the user's code."""
    current = traceback
    while current is not None and current.tb_frame.f_code.co_filename.startswith(_DEVHOST_DIR):
        current = current.tb_next
    return current or traceback
