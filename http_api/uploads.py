"""Uploads: valet-key URLs or small inline bodies, commit, and the profile."""

from __future__ import annotations

import azure.functions as func

from core import uploads
from core.auth import Principal
from core.errors import UnsupportedMediaType
from core.runtime import runtime
from http_api.blueprint import bp
from http_api.responses import api_path, endpoint, json_response, media_type, not_modified, read_json_object

# What clients send for a .csv file: Windows registers application/vnd.ms-excel for the extension.
# Not text/plain: a form on another site could send that without the browser asking this origin first.
CSV_TYPES = frozenset(
    {"text/csv", "application/csv", "application/vnd.ms-excel", "text/tab-separated-values"}
)


@bp.route(route="uploads", methods=["POST"])
@endpoint(idempotent=True, accepts=CSV_TYPES)
def create_upload(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Start an upload: JSON {fileName, size} gets an upload URL; a text/csv body is stored at once."""
    rt = runtime()
    kind = media_type(req)
    if kind == "application/json":
        body = read_json_object(req)
        created = uploads.create_upload(
            storage=rt.storage,
            settings=rt.settings,
            owner=principal,
            file_name=body.get("fileName"),
            size=body.get("size"),
        )
    elif kind in CSV_TYPES:
        created = uploads.store_upload(
            storage=rt.storage,
            settings=rt.settings,
            owner=principal,
            file_name=req.params.get("fileName", "upload.csv"),
            body=req.get_body(),
        )
    else:
        raise UnsupportedMediaType(
            "Send application/json {fileName, size} for an upload URL, or a text/csv body; "
            f"got {kind or 'no content type'}."
        )
    return json_response(created, status=201, headers={"Location": api_path("uploads", created["id"])})


@bp.route(route="uploads/{id}/commit", methods=["POST"])
@endpoint()
def commit_upload(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """The file is in place: queue its profiling and point at the status."""
    rt = runtime()
    upload = uploads.commit_upload(
        storage=rt.storage, settings=rt.settings, principal=principal, upload_id=req.route_params["id"]
    )
    location = api_path("uploads", upload.id)
    return json_response(
        {"id": upload.id, "status": upload.status},
        status=202,
        headers={"Location": location, "Retry-After": "1"},
    )


@bp.route(route="uploads/{id}", methods=["GET"])
@endpoint()
def get_upload(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Show an upload and, once profiled, its profile."""
    rt = runtime()
    upload = uploads.get_upload(storage=rt.storage, principal=principal, upload_id=req.route_params["id"])
    # Once profiled, an upload never changes again, so its entity's ETag versions the whole answer.
    cached = not_modified(req, upload.etag)
    if cached is not None:
        return cached
    return json_response(uploads.describe_upload(storage=rt.storage, upload=upload), version=upload.etag)
