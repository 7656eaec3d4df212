"""Fan-out for orchestrators: wait for every task, even when one fails."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Sequence
from typing import Any

import azure.durable_functions as df


def all_settled(
    context: df.DurableOrchestrationContext,
    tasks: Sequence[Any],
    *,
    stop: Callable[[], Any],
) -> Generator[Any, Any, list[Any]]:
    """Like `context.task_all(tasks)`, but when a task fails, raise its error only once all have ended.

    task_all fails as soon as one task fails while the others still run. The failure path (import_fail)
    then counts and cleans up what they are still writing: rows a dataset's row count misses, work blobs
    stored after the clean-up. `stop` makes the task (an activity) that tells the others to stand down
    first, so they do not go on with work that is no longer wanted. Yielding a task that has ended
    replays its outcome at once, so this stays deterministic.
    """
    try:
        results: list[Any] = yield context.task_all(tasks)
    except Exception:
        with contextlib.suppress(Exception):
            yield stop()
        for task in tasks:
            with contextlib.suppress(Exception):
                yield task
        raise
    return results
