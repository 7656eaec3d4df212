"""import-requests, export-requests, dataset-deletes: the workers behind the datasets API.

Messages carry a job id only (a claim check); the job entity says what is to be done, so a repeat or
late message finds the work done or in progress and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from opentelemetry.trace import SpanKind

from core import datasets, exports, imports, jobs, uploads
from core.errors import Invalid
from core.jobs import FINISHED
from core.runtime import runtime
from core.storage import DELETE_QUEUE, EXPORT_QUEUE, IMPORT_QUEUE
from core.telemetry import current_traceparent, function_span
from orchestrations.imports import DECISION_EVENT, ORCHESTRATOR
from queue_workers.blueprint import bp

log = logging.getLogger(__name__)
INTERNAL_ERROR = "The job stopped because of an internal error; the operators can look it up by its id."
DEAD = frozenset({df.OrchestrationRuntimeStatus.Failed, df.OrchestrationRuntimeStatus.Terminated})


def _parse(msg: func.QueueMessage, queue: str) -> tuple[str, str | None] | None:
    try:
        return uploads.parse_message(msg.get_body())
    except Invalid as error:
        # No retry can fix a malformed command: park it where admins look, without five attempts.
        log.error("Malformed message %s on %s (%s): moved to poison", msg.id, queue, error.detail)
        runtime().storage.send_to_poison(queue, msg.get_body().decode("utf-8", errors="replace"))
        return None


async def _handle(
    msg: func.QueueMessage,
    queue: str,
    work: Callable[[str, str | None], Awaitable[Any]],
    give_up: Callable[[str], None],
) -> None:
    parsed = _parse(msg, queue)
    if parsed is None:
        return
    job_id, traceparent = parsed
    attributes = {"loadbay.job_id": job_id, "messaging.message.id": msg.id or ""}
    with function_span(queue, traceparent=traceparent, kind=SpanKind.CONSUMER, attributes=attributes):
        try:
            outcome = await work(job_id, traceparent)
        except Exception:
            final = uploads.is_last_attempt(msg.dequeue_count, runtime().settings)
            log.exception(
                "%s for job %s failed (attempt %s, final: %s)", queue, job_id, msg.dequeue_count, final
            )
            if final:
                give_up(job_id)
            raise
    log.info("%s: job %s → %s", queue, job_id, outcome)


@bp.queue_trigger(arg_name="msg", queue_name=IMPORT_QUEUE, connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def relay_import(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """Start the import's orchestration (id = job id, so at most one), or pass it the review decision."""

    async def work(job_id: str, traceparent: str | None) -> str:
        action, job = imports.command_for(runtime().storage, job_id)
        if job is None or job.status in FINISHED:
            return action
        runtime_status = await _status(client, job_id)
        if runtime_status in DEAD:
            # A job whose orchestration is gone (failed or terminated) would hold its dataset for ever: a
            # command for it (a start, a decision, a cancel, a replay) ends it as failed instead.
            imports.fail_import(storage=runtime().storage, job_id=job_id, error=INTERNAL_ERROR)
            return "failed"
        if action == "start" and runtime_status is None:
            # The orchestration continues the relay's span: the trace reads HTTP → queue → orchestration.
            started = {"jobId": job_id, "traceparent": current_traceparent() or traceparent}
            try:
                await client.start_new(ORCHESTRATOR, job_id, started)
            except Exception:  # the SDK raises Exception itself: "... instance ... already exists"
                # Two commands for a queued import (its start and a cancel) may both find no orchestration;
                # the other one started it, which is all this one wanted.
                if (await _status(client, job_id)) is None:
                    raise
                return "started already"
        elif action == "decide":
            await client.raise_event(job_id, DECISION_EVENT, {"jobId": job_id})
        return action

    def give_up(job_id: str) -> None:
        imports.fail_import(storage=runtime().storage, job_id=job_id, error=INTERNAL_ERROR)

    await _handle(msg, IMPORT_QUEUE, work, give_up)


async def _status(client: df.DurableOrchestrationClient, instance_id: str) -> Any:
    """Return an orchestration's runtime status, or None when there is none."""
    status = await client.get_status(instance_id)
    return status.runtime_status if status else None


@bp.queue_trigger(arg_name="msg", queue_name=EXPORT_QUEUE, connection="AzureWebJobsStorage")
async def write_export(msg: func.QueueMessage) -> None:
    """Write the dataset's rows to the export's CSV file."""

    async def work(job_id: str, _traceparent: str | None) -> str:
        rt = runtime()
        began = time.monotonic()  # a slice's time counts from the invocation's start, not its thread's

        def write() -> str:
            left = rt.settings.export_slice_seconds - (time.monotonic() - began)
            return exports.run_export(storage=rt.storage, job_id=job_id, slice_seconds=max(0.0, left))

        # Long blocking work runs on a thread, so it never stalls the worker's event loop.
        return await asyncio.to_thread(write)

    def give_up(job_id: str) -> None:
        exports.fail_export(storage=runtime().storage, job_id=job_id, error=INTERNAL_ERROR)

    await _handle(msg, EXPORT_QUEUE, work, give_up)


@bp.queue_trigger(arg_name="msg", queue_name=DELETE_QUEUE, connection="AzureWebJobsStorage")
async def remove_dataset(msg: func.QueueMessage) -> None:
    """Delete a dataset with everything it holds."""

    async def work(job_id: str, _traceparent: str | None) -> str:
        return await asyncio.to_thread(datasets.delete_dataset, storage=runtime().storage, job_id=job_id)

    def give_up(job_id: str) -> None:
        jobs.change_job(
            runtime().storage,
            job_id,
            lambda job: (
                None if job.status in jobs.FINISHED else {"status": jobs.FAILED, "error": INTERNAL_ERROR}
            ),
        )

    await _handle(msg, DELETE_QUEUE, work, give_up)
