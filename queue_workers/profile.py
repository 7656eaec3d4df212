"""profile-requests: stream an uploaded file once and record its profile."""

from __future__ import annotations

import logging

import azure.functions as func
from opentelemetry.trace import SpanKind

from core import uploads
from core.errors import Invalid
from core.runtime import runtime
from core.storage import PROFILE_QUEUE
from core.telemetry import function_span
from queue_workers.blueprint import bp

log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name=PROFILE_QUEUE, connection="AzureWebJobsStorage")
def profile_upload(msg: func.QueueMessage) -> None:
    """Profile the upload named by the message; retried by the host on failure, then poisoned."""
    rt = runtime()
    try:
        upload_id, traceparent = uploads.parse_message(msg.get_body())
    except Invalid as error:
        # No retry can fix a malformed command: park it where admins look, without five attempts.
        log.error("Malformed message %s on %s (%s): moved to poison", msg.id, PROFILE_QUEUE, error.detail)
        rt.storage.send_to_poison(PROFILE_QUEUE, msg.get_body().decode("utf-8", errors="replace"))
        return
    attributes = {"loadbay.upload_id": upload_id, "messaging.message.id": msg.id or ""}
    with function_span(
        "profile_upload", traceparent=traceparent, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        try:
            status = uploads.profile_upload(storage=rt.storage, settings=rt.settings, upload_id=upload_id)
        except Exception as error:
            final = uploads.is_last_attempt(msg.dequeue_count, rt.settings)
            log.exception(
                "Profiling upload %s failed (attempt %s, final: %s)", upload_id, msg.dequeue_count, final
            )
            uploads.record_attempt_failure(storage=rt.storage, upload_id=upload_id, error=error, final=final)
            raise
    log.info("Upload %s profiled: %s", upload_id, status)
