"""Datasets: create, list, show, delete; and their rows: browse and get by key."""

from __future__ import annotations

import azure.functions as func

from core import browse, datasets
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


@bp.route(route="datasets", methods=["POST"])
@endpoint(idempotent=True)
def create_dataset(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Create a dataset from a Table Schema, or from a profiled upload's inferred schema."""
    dataset = datasets.create_dataset(storage=runtime().storage, owner=principal, body=read_json_object(req))
    return json_response(
        datasets.view(dataset),
        status=201,
        headers={"Location": api_path("datasets", dataset.id)},
        version=dataset.etag,
    )


@bp.route(route="datasets", methods=["GET"])
@endpoint()
def list_datasets(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """List the caller's datasets (an admin's: all), a page at a time."""
    limit = page_limit(req.params.get("limit"))
    return page_response(
        req,
        "datasets",
        lambda cursor: datasets.list_datasets(
            storage=runtime().storage, principal=principal, cursor=cursor, limit=limit
        ),
    )


@bp.route(route="datasets/{id}", methods=["GET"])
@endpoint()
def get_dataset(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Show a dataset: schema, row count, status."""
    dataset = datasets.get_dataset(
        storage=runtime().storage, principal=principal, dataset_id=req.route_params["id"]
    )
    return not_modified(req, dataset.etag) or json_response(datasets.view(dataset), version=dataset.etag)


@bp.route(route="datasets/{id}", methods=["DELETE"])
@endpoint()
def delete_dataset(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Start deleting a dataset with its rows, jobs and errors; it is gone when GET answers 404."""
    dataset_id = req.route_params["id"]
    job_id = datasets.request_delete(storage=runtime().storage, principal=principal, dataset_id=dataset_id)
    location = api_path("datasets", dataset_id)
    return json_response(
        {"id": dataset_id, "status": datasets.DELETING, "jobId": job_id},
        status=202,
        headers={"Location": location, "Retry-After": "2"},
    )


@bp.route(route="datasets/{id}/rows", methods=["GET"])
@endpoint()
def browse_rows(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Page through a dataset's rows ({key, values}); pass `next` back as ?cursor=."""
    rt = runtime()
    dataset = datasets.get_dataset(storage=rt.storage, principal=principal, dataset_id=req.route_params["id"])
    limit = page_limit(req.params.get("limit"))
    return page_response(
        req,
        f"rows:{dataset.id}",
        lambda cursor: browse.browse_rows(storage=rt.storage, dataset=dataset, cursor=cursor, limit=limit),
    )


@bp.route(route="datasets/{id}/rows/{*key}", methods=["GET"])  # a key may hold "/"
@endpoint()
def get_row(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Show one row by its key."""
    rt = runtime()
    dataset = datasets.get_dataset(storage=rt.storage, principal=principal, dataset_id=req.route_params["id"])
    return json_response(browse.get_row(storage=rt.storage, dataset=dataset, key=req.route_params["key"]))
