"""A thread pool of daemon threads for synchronous functions, so a stuck function cannot block exit."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

Result = TypeVar("Result")

_WorkItem = tuple[Future[Any], Callable[[], Any]]


class DaemonThreadPool:
    """Run callables on at most `max_workers` daemon threads (the worker's PYTHON_THREADPOOL_THREAD_COUNT).

    concurrent.futures.ThreadPoolExecutor joins its threads at interpreter exit, so one synchronous function
    still running after the shutdown grace period would keep the process alive; daemon threads do not.
    """

    def __init__(self, max_workers: int, name: str = "devhost-worker") -> None:
        self._max_workers = max_workers
        self._name = name
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, function: Callable[..., Result], /, *args: Any, **kwargs: Any) -> Future[Result]:
        """Schedule a call in the caller's context variables and return its future."""
        future: Future[Result] = Future()
        context = contextvars.copy_context()
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool is shut down")
            self._work.put((future, lambda: context.run(function, *args, **kwargs)))
            self._grow()
        return future

    def _grow(self) -> None:
        if self._idle.acquire(blocking=False) or len(self._threads) >= self._max_workers:
            return
        thread = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as error:  # noqa: BLE001 - handed to the awaiting coroutine, not swallowed
                    future.set_exception(error)
            self._idle.release()

    def shutdown(self) -> None:
        """Stop accepting work and let idle threads end; busy daemon threads end with the process."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._work.put(None)
