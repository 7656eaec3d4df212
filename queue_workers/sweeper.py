"""Timers: re-send lost commands, fail uploads nobody finished, forget old Idempotency-Keys."""

from __future__ import annotations

import logging

import azure.functions as func
from opentelemetry.trace import SpanKind

from core import idempotency, jobs, uploads
from core.runtime import runtime
from core.telemetry import function_span
from queue_workers.blueprint import bp

log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False)
def sweep_uploads(timer: func.TimerRequest) -> None:
    """Recover uploads stuck in `uploaded` (lost command) or `profiling` (worker died on its last try), and
    fail those never committed."""
    with function_span("sweep_uploads", traceparent=None, kind=SpanKind.INTERNAL):
        counts = uploads.sweep_uploads(storage=runtime().storage)
    if any(counts.values()):
        log.warning(
            "Upload sweep: re-sent %(resent)d commands, expired %(expired)d uploads, "
            "abandoned %(abandoned)d never committed",
            counts,
        )


@bp.timer_trigger(arg_name="timer", schedule="*/15 * * * * *", run_on_startup=True)
def sweep_outbox(timer: func.TimerRequest) -> None:
    """Send job commands whose first send was lost (the outbox rows still there after a while)."""
    with function_span("sweep_outbox", traceparent=None, kind=SpanKind.INTERNAL):
        sent = jobs.sweep_outbox(runtime().storage)
    if sent:
        log.warning("Outbox sweep: sent %d lost commands", sent)


@bp.timer_trigger(arg_name="timer", schedule="0 17 * * * *", run_on_startup=False)
def sweep_idempotency_keys(timer: func.TimerRequest) -> None:
    """Forget Idempotency-Keys past the time their answers are replayed for (hourly)."""
    with function_span("sweep_idempotency_keys", traceparent=None, kind=SpanKind.INTERNAL):
        forgotten = idempotency.forget_old_keys(runtime().storage)
    log.info("Idempotency sweep: forgot %d keys", forgotten)
