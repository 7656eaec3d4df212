"""Operators (role admin): queue depths, poison messages to replay or discard, failed work."""

from __future__ import annotations

import azure.functions as func

from core import ops
from core.auth import Principal
from core.errors import BadRequest
from core.paging import page_limit
from core.runtime import runtime
from http_api.blueprint import bp
from http_api.responses import endpoint, json_response, page_response

JOB_STATUSES = frozenset(
    {
        "failed",
        "queued",
        "validating",
        "awaiting_review",
        "applying",
        "running",
        "cancelled",
        "expired",
        "rejected",
        "completed",
        # uploads (listed after the jobs)
        "pending",
        "uploaded",
        "profiling",
        "profiled",
    }
)


@bp.route(route="ops/queues", methods=["GET"])
@endpoint(admin=True)
def ops_queues(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Show each queue's depth and its poison queue's."""
    return json_response({"items": ops.queue_depths(runtime().storage)})


@bp.route(route="ops/poison", methods=["GET"])
@endpoint(admin=True)
def ops_poison(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """List poison messages, of one queue (?queue=) or all."""
    return json_response(
        {"items": ops.poison_messages(runtime().storage, queue=req.params.get("queue") or None)}
    )


@bp.route(route="ops/poison/{queue}/{messageId}/replay", methods=["POST"])
@endpoint(admin=True)
def ops_replay(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Send a poison message back to its queue."""
    queue, message_id = req.route_params["queue"], req.route_params["messageId"]
    ops.replay(runtime().storage, queue=queue, message_id=message_id)
    return json_response({"queue": queue, "id": message_id, "replayed": True}, status=202)


@bp.route(route="ops/poison/{queue}/{messageId}", methods=["DELETE"])
@endpoint(admin=True)
def ops_discard(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Discard a poison message."""
    ops.discard(runtime().storage, queue=req.route_params["queue"], message_id=req.route_params["messageId"])
    return func.HttpResponse(status_code=204)


@bp.route(route="ops/jobs", methods=["GET"])
@endpoint(admin=True)
def ops_jobs(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """List jobs and uploads in a status (default: failed), across all users."""
    status = req.params.get("status", "failed")
    if status not in JOB_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(sorted(JOB_STATUSES))}; got {status!r}.")
    limit = page_limit(req.params.get("limit"))
    return page_response(
        req,
        f"ops-jobs:{status}",
        lambda cursor: ops.failed_jobs(runtime().storage, status=status, cursor=cursor, limit=limit),
    )
