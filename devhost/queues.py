"""Queue triggers: poll Azure Storage queues with host.json semantics (batches, back-off, retries, poison)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError
from azure.core.exceptions import AzureError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueMessage as StoredMessage
from azure.storage.queue.aio import QueueClient

from devhost.bindings import decode_queue_message, queue_name
from devhost.config import MIN_POLLING_INTERVAL
from devhost.invoker import RuntimeFunction
from devhost.runtime import Runtime, TriggerKind, remaining

logger = logging.getLogger("devhost")

# Burst mode only needs to notice quickly when a retried message becomes visible again.
BURST_MAX_POLLING_INTERVAL = 1.0
_STORAGE_ERRORS = (AzureError, ClientError, OSError)


@dataclass
class Lease:
    """A received message's id and current pop receipt (renewals change the receipt)."""

    message_id: str
    pop_receipt: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class QueueListener:
    """Poll one queue for one function: batchSize per poll, refill at newBatchThreshold, back off if empty."""

    def __init__(self, function: RuntimeFunction, runtime: Runtime) -> None:
        trigger = function.spec.trigger
        self.function = function
        self.runtime = runtime
        self.options = runtime.host_config.queues
        self.queue_name = queue_name(trigger, runtime)
        self.poison_name = f"{self.queue_name}-poison"
        self.connection: str | None = trigger.get("connection")
        runtime.storage.connection_string(self.connection)
        self.lease_seconds = max(1, int(runtime.settings.queue_lease_seconds))
        self.in_flight: set[asyncio.Task[None]] = set()
        self._client: QueueClient | None = None
        self._poller: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._warned = False

    @property
    def client(self) -> QueueClient:
        """The queue client (available once started)."""
        if self._client is None:
            raise RuntimeError("the listener has not been started")
        return self._client

    async def start(self) -> None:
        """Create the queue if needed and start polling."""
        self._client = await self.runtime.storage.ensure_queue(self.connection, self.queue_name)
        self._poller = asyncio.create_task(self._poll(), name=f"poll {self.queue_name}")

    def _max_interval(self) -> float:
        if self.runtime.burst:
            return min(self.options.max_polling_interval, BURST_MAX_POLLING_INTERVAL)
        return self.options.max_polling_interval

    async def _poll(self) -> None:
        delay = MIN_POLLING_INTERVAL
        while not self._stopping.is_set():
            if len(self.in_flight) > self.options.new_batch_threshold:
                # The host fetches the next batch only once in-flight work drops to newBatchThreshold.
                await self._pause(None)
                continue
            messages = await self._receive()
            if messages:
                for message in messages:
                    self._spawn(message)
                delay = MIN_POLLING_INTERVAL
                continue
            await self._pause(delay)
            delay = min(delay * 2, self._max_interval())

    async def _pause(self, timeout: float | None) -> None:
        self._wake.clear()
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _receive(self) -> list[StoredMessage]:
        try:
            pager = self.client.receive_messages(
                messages_per_page=self.options.batch_size,
                max_messages=self.options.batch_size,
                visibility_timeout=self.lease_seconds,
            )
            messages = [message async for message in pager]
        except _STORAGE_ERRORS as error:
            if not self._warned:
                logger.warning(
                    "Polling queue '%s' failed (%s); retrying with back-off", self.queue_name, error
                )
                self._warned = True
            return []
        self._warned = False
        return messages

    def _spawn(self, message: StoredMessage) -> None:
        task = asyncio.create_task(self._process(message), name=f"{self.function.name} {message.id}")
        self.in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "Processing a message of queue '%s' failed", self.queue_name, exc_info=task.exception()
            )

    async def _process(self, message: StoredMessage) -> None:
        lease = Lease(message.id, message.pop_receipt or "")
        settled = asyncio.Event()
        renewal = asyncio.create_task(self._renew(lease, settled))
        try:
            succeeded = await self._invoke(message)
        except asyncio.CancelledError:
            await self._end_renewal(renewal, settled)
            # Shutdown abandoned this invocation: make the message visible again rather than losing a lease.
            await asyncio.shield(self._set_visibility(lease, 0))
            raise
        await self._end_renewal(renewal, settled)
        if succeeded is None:
            logger.error(
                "Message '%s' on queue '%s' is not valid base64 (host.json messageEncoding is base64): "
                "moving it to '%s'", message.id, self.queue_name, self.poison_name,
            )  # fmt: skip
            await self._poison(message, lease)
        elif succeeded:
            await self._delete(lease)
        elif (message.dequeue_count or 0) >= self.options.max_dequeue_count:
            logger.warning(
                "Message '%s' has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                message.id, self.options.max_dequeue_count, self.poison_name,
            )  # fmt: skip
            await self._poison(message, lease)
        else:
            await self._set_visibility(lease, int(self.options.visibility_timeout))

    async def _invoke(self, message: StoredMessage) -> bool | None:
        """Invoke the function; None means the message could not be decoded."""
        try:
            body = decode_queue_message(str(message.content or ""), self.options.message_encoding)
        except ValueError:
            return None
        argument = QueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        value: Any = argument
        # Like the worker, a trigger parameter annotated `str` or `bytes` gets the body itself.
        if self.function.spec.trigger_annotation == "str":
            value = body.decode("utf-8")
        elif self.function.spec.trigger_annotation == "bytes":
            value = body
        arguments: dict[str, Any] = {self.function.spec.trigger.name: value}
        result = await self.runtime.invoker.invoke(
            self.function, "queue", arguments,
            detail=[f"message={message.id}", f"dequeue_count={message.dequeue_count}"],
        )  # fmt: skip
        return result.succeeded

    async def _renew(self, lease: Lease, done: asyncio.Event) -> None:
        # Keep a long invocation's message invisible: renew the lease at half its length, as the host does.
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.lease_seconds / 2)
                return
            await self._set_visibility(lease, self.lease_seconds)

    @staticmethod
    async def _end_renewal(renewal: asyncio.Task[None], done: asyncio.Event) -> None:
        # Let a renewal in progress finish: cancelling an update midway could lose the new pop receipt.
        done.set()
        await asyncio.gather(renewal, return_exceptions=True)

    async def _set_visibility(self, lease: Lease, seconds: int) -> None:
        async with lease.lock:
            try:
                updated = await self.client.update_message(
                    lease.message_id, lease.pop_receipt, visibility_timeout=seconds
                )
            except _STORAGE_ERRORS as error:
                logger.warning(
                    "Could not update message '%s' on '%s': %s", lease.message_id, self.queue_name, error
                )
                return
            lease.pop_receipt = updated.pop_receipt or lease.pop_receipt

    async def _delete(self, lease: Lease) -> None:
        async with lease.lock:
            try:
                await self.client.delete_message(lease.message_id, lease.pop_receipt)
            except _STORAGE_ERRORS as error:
                logger.warning(
                    "Could not delete message '%s' from '%s': %s", lease.message_id, self.queue_name, error
                )

    async def _poison(self, message: StoredMessage, lease: Lease) -> None:
        try:
            poison = await self.runtime.storage.ensure_queue(self.connection, self.poison_name)
            # The original text, still encoded, so a replay to the source queue works unchanged.
            await poison.send_message(message.content)
        except _STORAGE_ERRORS as error:
            logger.error("Could not move message '%s' to '%s': %s", message.id, self.poison_name, error)
            return
        await self._delete(lease)

    async def is_idle(self) -> bool:
        """Say whether nothing is in flight and the queue holds no messages, visible or not."""
        if self.in_flight:
            return False
        try:
            properties = await self.client.get_queue_properties()
        except _STORAGE_ERRORS:
            return False
        return (properties.approximate_message_count or 0) == 0

    async def stop(self, deadline: float) -> None:
        """Stop polling, wait for in-flight messages until the deadline, then abandon and release the rest."""
        self._stopping.set()
        self._wake.set()
        if self._poller is not None:
            await asyncio.gather(self._poller, return_exceptions=True)
        pending = set(self.in_flight)
        if pending:
            _, unfinished = await asyncio.wait(pending, timeout=remaining(deadline))
            for task in unfinished:
                name = task.get_name()
                logger.warning("Abandoning %s at shutdown; its message stays queued", name)
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)


class QueueTriggerKind(TriggerKind):
    """Serve `queueTrigger` functions with one listener each."""

    kind = "queue"
    trigger_types = frozenset({"queueTrigger"})

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.listeners: list[QueueListener] = []

    def add(self, function: RuntimeFunction) -> None:
        self.listeners.append(QueueListener(function, self.runtime))
        super().add(function)

    def describe(self, function: RuntimeFunction) -> str:
        listener = next(item for item in self.listeners if item.function is function)
        return f"{function.name}: queueTrigger (queue '{listener.queue_name}')"

    async def start(self) -> None:
        for listener in self.listeners:
            await listener.start()

    async def is_idle(self) -> bool:
        states = [await listener.is_idle() for listener in self.listeners]
        return all(states)

    async def stop(self, deadline: float) -> None:
        await asyncio.gather(*(listener.stop(deadline) for listener in self.listeners))
