"""Exports: write a dataset to a CSV file in the background, then download it with a short-lived link."""

from __future__ import annotations

import azure.functions as func

from core import exports, jobs
from core.auth import Principal
from core.runtime import runtime
from http_api.blueprint import bp
from http_api.responses import api_path, endpoint, json_response, read_json_object


@bp.route(route="datasets/{id}/exports", methods=["POST"])
@endpoint(idempotent=True)
def start_export(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Start exporting a dataset to CSV; poll the Location until it has a downloadUrl."""
    rt = runtime()
    body = read_json_object(req) if req.get_body() else {}
    job = exports.start_export(
        storage=rt.storage, principal=principal, dataset_id=req.route_params["id"], body=body
    )
    view = exports.export_view(storage=rt.storage, settings=rt.settings, job=job)
    return json_response(
        view, status=202, headers={"Location": api_path("exports", job.id), "Retry-After": "1"}
    )


@bp.route(route="exports/{id}", methods=["GET"])
@endpoint()
def get_export(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Show an export; once completed, with a fresh read-only downloadUrl."""
    rt = runtime()
    job = jobs.job_for(rt.storage, principal, req.route_params["id"], kind=jobs.EXPORT)
    return json_response(exports.export_view(storage=rt.storage, settings=rt.settings, job=job))
