"""GET /api/me: who the caller is, as Loadbay sees them."""

from __future__ import annotations

import azure.functions as func

from core.auth import Principal
from http_api.blueprint import bp
from http_api.responses import endpoint, json_response


@bp.route(route="me", methods=["GET"])
@endpoint()
def me(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Return the caller's principal and roles."""
    return json_response({**principal.to_json(), "isAdmin": principal.is_admin})
