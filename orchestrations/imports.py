"""The import orchestration: plan → validate chunks → find duplicate (and existing) keys → review → apply →
finalize.

The orchestrator is deterministic: it decides only from its input and activity results. Every activity
is a thin call into ``core.imports``, which is idempotent, so the at-least-once replays of Durable
Functions (and the retries below) never change the outcome.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import azure.durable_functions as df
from opentelemetry.trace import SpanKind

from core import imports
from core.runtime import runtime
from core.telemetry import function_span, record_span
from orchestrations.blueprint import bp
from orchestrations.fanout import all_settled

log = logging.getLogger(__name__)

ORCHESTRATOR = "import_orchestrator"
PLAN = "import_plan"
VALIDATE = "import_validate_chunk"
MERGE_KEYS = "import_merge_keys"
CHECK_KEYS = "import_check_keys"
REVIEW = "import_review"
DECIDE = "import_decide"
APPLY = "import_apply_chunk"
FINALIZE = "import_finalize"
FAIL = "import_fail"
STOP = "import_stop"
DECISION_EVENT = "decision"
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=4)


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)
def import_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    """Run one import from its plan to its final counts; any failure ends it as `failed`."""
    started = context.get_input()
    job_id = started["jobId"]
    # Every activity gets the trace context the command carried, so one import is one trace.
    job = {"jobId": job_id, "traceparent": started.get("traceparent")}
    if not context.is_replaying:  # the first run: replays are not new work, so they get no span
        _span(job)
    try:
        result = yield from _run(context, job)
    except Exception as error:  # noqa: BLE001  (an activity failed on every retry: the job says so)
        reason = imports.INTERNAL_FAILURE
        if not context.is_replaying:
            log.error("Import %s failed: %s", job_id, error)
            _span(job, error)
        failed = {**job, "error": reason, "detail": str(error)[:500]}
        return (yield context.call_activity_with_retry(FAIL, RETRY, failed))
    return result


def _span(job: dict[str, Any], error: BaseException | None = None) -> None:
    # The orchestrator's span ends at once (it yields); activities continue the trace the command carried.
    record_span(
        ORCHESTRATOR,
        traceparent=job["traceparent"],
        kind=SpanKind.INTERNAL,
        attributes={"loadbay.job_id": job["jobId"]},
        error=error,
    )


def _run(context: df.DurableOrchestrationContext, job: dict[str, Any]) -> Any:
    def stop() -> Any:  # a chunk failed on every retry: the others stand down
        return context.call_activity_with_retry(STOP, RETRY, job)

    plan = yield context.call_activity_with_retry(PLAN, RETRY, job)
    if "stop" in plan:
        return {"status": plan["stop"]}
    yield from all_settled(
        context,
        [
            context.call_activity_with_retry(VALIDATE, RETRY, {**job, "index": i})
            for i in range(plan["chunks"])
        ],
        stop=stop,
    )
    # Keys repeated across the file, and (an insert into rows) keys the dataset has: side by side.
    checks = [
        context.call_activity_with_retry(MERGE_KEYS, RETRY, {**job, "bucket": b})
        for b in range(plan["buckets"])
    ] + [
        context.call_activity_with_retry(CHECK_KEYS, RETRY, {**job, "group": g})
        for g in range(plan.get("groups", 0))  # none in a plan an earlier version made
    ]
    if checks:
        yield from all_settled(context, checks, stop=stop)
    step = yield context.call_activity_with_retry(REVIEW, RETRY, job)
    if step["next"] == "review":
        step = yield from _review(context, job, step["expiresAt"])
    if step["next"] != "apply":
        return {"status": step.get("status", "stopped")}
    yield from all_settled(
        context,
        [context.call_activity_with_retry(APPLY, RETRY, {**job, "index": i}) for i in range(plan["chunks"])],
        stop=stop,
    )
    return (yield context.call_activity_with_retry(FINALIZE, RETRY, job))


def _review(context: df.DurableOrchestrationContext, job: dict[str, Any], expires_at: str) -> Any:
    """Wait for approve / reject / cancel, or for the review window to end."""
    deadline = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    while True:
        timer = context.create_timer(deadline)
        decision = context.wait_for_external_event(DECISION_EVENT)
        winner = yield context.task_any([decision, timer])
        timed_out = winner == timer
        if not timed_out:
            timer.cancel()
        step = yield context.call_activity_with_retry(DECIDE, RETRY, {**job, "timedOut": timed_out})
        if step["next"] != "wait":
            return step


def _activity(name: str, payload: dict[str, Any], work: Any) -> Any:
    attributes = {"loadbay.job_id": payload["jobId"]}
    with function_span(
        name, traceparent=payload.get("traceparent"), kind=SpanKind.INTERNAL, attributes=attributes
    ):
        return work(runtime())


@bp.activity_trigger(input_name="payload", activity=PLAN)
def import_plan(payload: dict[str, Any]) -> dict[str, Any]:
    """Cut the file into chunks of whole records."""
    return _activity(
        PLAN,
        payload,
        lambda rt: imports.plan_import(storage=rt.storage, settings=rt.settings, job_id=payload["jobId"]),
    )


@bp.activity_trigger(input_name="payload", activity=VALIDATE)
def import_validate_chunk(payload: dict[str, Any]) -> dict[str, Any]:
    """Validate one chunk."""
    return _activity(
        VALIDATE,
        payload,
        lambda rt: imports.validate_chunk(
            storage=rt.storage, job_id=payload["jobId"], index=payload["index"]
        ),
    )


@bp.activity_trigger(input_name="payload", activity=MERGE_KEYS)
def import_merge_keys(payload: dict[str, Any]) -> dict[str, Any]:
    """Find duplicate keys in one bucket."""
    return _activity(
        MERGE_KEYS,
        payload,
        lambda rt: imports.merge_key_bucket(
            storage=rt.storage, job_id=payload["jobId"], bucket=payload["bucket"]
        ),
    )


@bp.activity_trigger(input_name="payload", activity=CHECK_KEYS)
def import_check_keys(payload: dict[str, Any]) -> dict[str, Any]:
    """Find the rows whose key the dataset has already, in one group of its partitions."""
    return _activity(
        CHECK_KEYS,
        payload,
        lambda rt: imports.check_existing_keys(
            storage=rt.storage, job_id=payload["jobId"], group=payload["group"]
        ),
    )


@bp.activity_trigger(input_name="payload", activity=REVIEW)
def import_review(payload: dict[str, Any]) -> dict[str, Any]:
    """Count the findings and decide whether a review is needed."""
    return _activity(
        REVIEW, payload, lambda rt: imports.review_import(storage=rt.storage, job_id=payload["jobId"])
    )


@bp.activity_trigger(input_name="payload", activity=DECIDE)
def import_decide(payload: dict[str, Any]) -> dict[str, Any]:
    """Act on the review's decision or its end."""
    return _activity(
        DECIDE,
        payload,
        lambda rt: imports.decide_import(
            storage=rt.storage, job_id=payload["jobId"], timed_out=payload["timedOut"]
        ),
    )


@bp.activity_trigger(input_name="payload", activity=APPLY)
def import_apply_chunk(payload: dict[str, Any]) -> dict[str, Any]:
    """Write one chunk's valid rows."""
    return _activity(
        APPLY,
        payload,
        lambda rt: imports.apply_chunk(storage=rt.storage, job_id=payload["jobId"], index=payload["index"]),
    )


@bp.activity_trigger(input_name="payload", activity=FINALIZE)
def import_finalize(payload: dict[str, Any]) -> dict[str, Any]:
    """Record the final counts and release the dataset."""
    return _activity(
        FINALIZE, payload, lambda rt: imports.finalize_import(storage=rt.storage, job_id=payload["jobId"])
    )


@bp.activity_trigger(input_name="payload", activity=STOP)
def import_stop(payload: dict[str, Any]) -> dict[str, Any]:
    """Make the import's other chunks stand down: one failed on every retry."""
    return _activity(
        STOP, payload, lambda rt: imports.stop_import(storage=rt.storage, job_id=payload["jobId"])
    )


@bp.activity_trigger(input_name="payload", activity=FAIL)
def import_fail(payload: dict[str, Any]) -> dict[str, Any]:
    """Mark the import failed."""
    log.error("Import %s failed: %s", payload["jobId"], payload.get("detail"))
    return _activity(
        FAIL,
        payload,
        lambda rt: imports.fail_import(storage=rt.storage, job_id=payload["jobId"], error=payload["error"]),
    )
