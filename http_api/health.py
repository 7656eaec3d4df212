"""GET /api/health: is storage reachable? Anonymous, for load balancers and `make run`."""

from __future__ import annotations

import logging

import azure.functions as func
from azure.core.exceptions import AzureError

from core.auth import Principal
from core.runtime import runtime
from core.storage import UPLOADS_CONTAINER
from http_api.blueprint import bp
from http_api.responses import endpoint, json_response

log = logging.getLogger(__name__)


@bp.route(route="health", methods=["GET"])
@endpoint(anonymous=True)
def health(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Answer 200 when storage answers, 503 when it does not."""
    try:
        # A constant-cost probe: table queries get slower as tables grow (Azurite scans them).
        runtime().storage.blobs.get_container_client(UPLOADS_CONTAINER).get_container_properties()
    except (AzureError, OSError) as error:
        log.warning("Health check failed: %s", error)
        return json_response({"status": "unavailable", "storage": "unreachable"}, status=503)
    return json_response({"status": "ok", "storage": "ok"})
