"""Imports: start one on a dataset, watch it, review its errors, and approve, reject or cancel it."""

from __future__ import annotations

import azure.functions as func

from core import imports, jobs
from core.auth import Principal
from core.paging import page_limit
from core.runtime import runtime
from http_api.blueprint import bp
from http_api.responses import (
    api_path,
    endpoint,
    json_response,
    not_modified,
    page_response,
    read_json_object,
)


@bp.route(route="datasets/{id}/imports", methods=["POST"])
@endpoint(idempotent=True)
def start_import(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Start importing a profiled upload into a dataset; the work runs in the background."""
    rt = runtime()
    job = imports.start_import(
        storage=rt.storage,
        settings=rt.settings,
        principal=principal,
        dataset_id=req.route_params["id"],
        body=read_json_object(req),
    )
    return json_response(
        imports.import_view(rt.storage, job),
        status=202,
        headers={"Location": api_path("imports", job.id), "Retry-After": "1"},
    )


@bp.route(route="datasets/{id}/imports", methods=["GET"])
@endpoint()
def list_imports(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """List a dataset's imports, newest first."""
    dataset_id = req.route_params["id"]
    limit = page_limit(req.params.get("limit"), default=20, maximum=100)
    return page_response(
        req,
        f"imports:{dataset_id}",
        lambda cursor: imports.list_imports(
            storage=runtime().storage, principal=principal, dataset_id=dataset_id, cursor=cursor, limit=limit
        ),
    )


@bp.route(route="imports/{id}", methods=["GET"])
@endpoint()
def get_import(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Show an import: status, phase, progress, counts and error summary."""
    storage = runtime().storage
    job = imports.get_import(storage=storage, principal=principal, job_id=req.route_params["id"])
    if job.status in jobs.FINISHED:  # a finished import never changes: revalidate cheaply
        return not_modified(req, job.etag) or json_response(
            imports.import_view(storage, job), version=job.etag
        )
    return json_response(imports.import_view(storage, job))


@bp.route(route="imports/{id}/errors", methods=["GET"])
@endpoint()
def list_errors(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Page through an import's row errors, in row order."""
    storage = runtime().storage
    job = imports.get_import(storage=storage, principal=principal, job_id=req.route_params["id"])
    limit = page_limit(req.params.get("limit"))
    return page_response(
        req,
        f"errors:{job.id}",
        lambda cursor: imports.errors_page(storage=storage, job=job, cursor=cursor, limit=limit),
    )


@bp.route(route="imports/{id}/errors.csv", methods=["GET"])
@endpoint()
def errors_csv(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Download an import's row errors as CSV."""
    storage = runtime().storage
    job = imports.get_import(storage=storage, principal=principal, job_id=req.route_params["id"])
    return func.HttpResponse(
        imports.errors_csv(storage=storage, job=job),
        status_code=200,
        mimetype="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{job.id}-errors.csv"'},
    )


def _decide(req: func.HttpRequest, principal: Principal, action: str) -> func.HttpResponse:
    storage = runtime().storage
    job = imports.record_decision(
        storage=storage, principal=principal, job_id=req.route_params["id"], action=action
    )
    return json_response(
        imports.import_view(storage, job), status=202, headers={"Location": api_path("imports", job.id)}
    )


@bp.route(route="imports/{id}/approve", methods=["POST"])
@endpoint()
def approve_import(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Approve an import awaiting review: its valid rows will be applied."""
    return _decide(req, principal, "approve")


@bp.route(route="imports/{id}/reject", methods=["POST"])
@endpoint()
def reject_import(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Reject an import awaiting review: nothing is applied."""
    return _decide(req, principal, "reject")


@bp.route(route="imports/{id}/cancel", methods=["POST"])
@endpoint()
def cancel_import(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Stop an import; replace leaves the dataset as it was, the other modes keep what was applied."""
    return _decide(req, principal, "cancel")
