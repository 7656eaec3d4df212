"""GET /api/openapi.json: the HTTP API described in OpenAPI 3.1, written by hand next to the routes.

The document is plain data that takes statuses, modes and limits from the constants the handlers and
`core` use; `tests/http_api/test_openapi.py` checks that every registered route is described with its
methods and its `@endpoint` options, and that nothing else is.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

import azure.functions as func

from core import datasets, imports, jobs, uploads
from core.auth import PRINCIPAL_HEADER, Principal
from core.idempotency import MAX_KEY_CHARS
from core.paging import DEFAULT_LIMIT, MAX_LIMIT
from core.tableschema import CONSTRAINTS_BY_TYPE, MAX_FIELDS, STRING_FORMATS
from http_api.blueprint import bp
from http_api.ops import JOB_STATUSES
from http_api.responses import IDEMPOTENCY_HEADER, endpoint, json_response, not_modified
from http_api.uploads import CSV_TYPES

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"
SECURITY_SCHEME = "clientPrincipal"

Schema = dict[str, Any]


@bp.route(route="openapi.json", methods=["GET"])
@endpoint(anonymous=True)
def openapi(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Describe the HTTP API in OpenAPI 3.1."""
    document, version = _published()
    return not_modified(req, version) or json_response(document, version=version)


@functools.cache
def _published() -> tuple[dict[str, Any], str]:
    # The document never changes while the app runs: build it and its version once.
    document = openapi_document()
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return document, hashlib.sha256(text.encode()).hexdigest()


def openapi_document() -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of Loadbay's HTTP API (a fresh dict on every call)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Loadbay",
            "version": API_VERSION,
            "summary": "Upload CSV files, profile them, validate them against a Table Schema and load them.",
            "description": (
                "All answers are JSON; errors are RFC 9457 `application/problem+json` whose `detail` says "
                "what is wrong, with `problems[]` listing each one for schema, mapping and request checks. "
                "No principal → 401, someone else's resource → 404, too many requests → 429 with "
                "`Retry-After`. Lists answer `{items, next}`: pass `next` back as `?cursor=` until it is "
                "null. POSTs that create something honour `Idempotency-Key`. A request that changes "
                "something sends JSON (or no body): another media type is a 415."
            ),
        },
        "servers": [{"url": "/api"}],
        "security": [{SECURITY_SCHEME: []}],
        "tags": [
            {"name": "service", "description": "Health, the caller, and this document."},
            {"name": "uploads", "description": "Upload a CSV file and read its profile."},
            {"name": "datasets", "description": "Datasets: a Table Schema and the rows loaded into it."},
            {"name": "imports", "description": "Validate an upload against a dataset, review, apply."},
            {"name": "exports", "description": "Write a dataset to a CSV file and download it."},
            {"name": "ops", "description": "For operators (role `admin`): queues, poison messages, jobs."},
        ],
        "paths": _taking_json(
            {
                **_service_paths(),
                **_upload_paths(),
                **_dataset_paths(),
                **_import_paths(),
                **_export_paths(),
                **_ops_paths(),
            }
        ),
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "apiKey",
                    "in": "header",
                    "name": PRINCIPAL_HEADER,
                    "description": (
                        "The signed-in caller, as base64-encoded JSON. Azure Static Web Apps or App Service "
                        "Authentication set it on requests from a signed-in user; callers do not send it "
                        "themselves. Both shapes are accepted: SWA's (`identityProvider`, `userId`, "
                        "`userDetails`, `userRoles`) and App Service's (`auth_typ`, `claims[{typ, val}]`, "
                        "roles in `roles` claims). Operations that list `admin` need that role."
                    ),
                }
            },
            "parameters": _parameters(),
            "headers": _headers(),
            "responses": _error_responses(),
            "schemas": _schemas(),
        },
    }


# --- building blocks -----------------------------------------------------------------------------

ERROR_RESPONSES = {
    400: ("BadRequest", "The request is malformed (body, cursor, limit or header)."),
    401: ("Unauthorized", "No signed-in principal."),
    403: ("Forbidden", "The caller lacks the role this needs."),
    404: ("NotFound", "No such resource, or it belongs to someone else."),
    409: ("Conflict", "The resource's current state does not allow this."),
    413: ("TooLarge", "A size or count limit was exceeded."),
    415: ("UnsupportedMediaType", "The body's media type is not one this operation takes."),
    422: ("Invalid", "The request is well-formed but not valid; `problems` lists each problem."),
    429: ("TooManyRequests", "The caller's rate limit is used up; try again after `Retry-After` seconds."),
    500: ("InternalError", "Something went wrong on the server's side."),
    503: ("Unavailable", "A dependency is not ready, or the service is misconfigured; try again later."),
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _parameter(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _header(name: str) -> Schema:
    return {"$ref": f"#/components/headers/{name}"}


def _object(properties: dict[str, Schema], *, required: tuple[str, ...] | None = None) -> Schema:
    """An object with these properties, all required unless `required` names fewer."""
    return {
        "type": "object",
        "required": list(properties if required is None else required),
        "properties": properties,
    }


def _page(item: str) -> Schema:
    return _object(
        {
            "items": {"type": "array", "items": _ref(item)},
            "next": {
                "type": ["string", "null"],
                "description": "Pass as `?cursor=` for the next page; null on the last page.",
            },
        }
    )


def _answer(
    description: str,
    schema: Schema | None = None,
    *,
    headers: tuple[str, ...] = (),
    media_type: str = "application/json",
) -> Schema:
    answer: Schema = {"description": description}
    if headers:
        answer["headers"] = {name: _header(name.replace("-", "")) for name in headers}
    if schema is not None:
        answer["content"] = {media_type: {"schema": schema}}
    return answer


def _json_body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _limit(*, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> Schema:
    return {
        "name": "limit",
        "in": "query",
        "description": f"Items per page; more than {maximum} is refused with a 413.",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    }


def _taking_json(paths: dict[str, Schema]) -> dict[str, Schema]:
    """Add the 415 every operation that changes something answers to a body that is not JSON."""
    for item in paths.values():
        for method in ("post", "put", "patch", "delete"):
            if method in item:
                responses = item[method]["responses"]
                responses.setdefault("415", {"$ref": "#/components/responses/UnsupportedMediaType"})
                item[method]["responses"] = dict(sorted(responses.items()))
    return paths


def _operation(
    operation_id: str,
    tag: str,
    summary: str,
    *,
    ok: dict[int, Schema],
    errors: tuple[int, ...] = (),
    parameters: tuple[Schema, ...] = (),
    body: Schema | None = None,
    anonymous: bool = False,
    admin: bool = False,
    idempotent: bool = False,
) -> Schema:
    """Describe one operation; the errors every `@endpoint` can answer are added here.

    `operation_id` is the handler's name, which is also the function's name in the Functions host.
    """
    codes = set(errors) | {500, 503}
    if not anonymous:
        codes |= {401, 429}
    if admin:
        codes.add(403)
    if idempotent:
        codes |= {400, 409, 422}  # a malformed key; a repeat still in progress; a key reused elsewhere
        for code, answer in ok.items():
            if code < 300:
                answer.setdefault("headers", {})["Idempotent-Replayed"] = _header("IdempotentReplayed")
    responses = {str(code): answer for code, answer in ok.items()}
    for code in sorted(codes):
        responses.setdefault(str(code), {"$ref": f"#/components/responses/{ERROR_RESPONSES[code][0]}"})
    operation: Schema = {"operationId": operation_id, "tags": [tag], "summary": summary}
    all_parameters = [*parameters, *([_parameter("IdempotencyKey")] if idempotent else [])]
    if all_parameters:
        operation["parameters"] = all_parameters
    if body is not None:
        operation["requestBody"] = body
    if anonymous:
        operation["security"] = []
    elif admin:
        operation["security"] = [{SECURITY_SCHEME: ["admin"]}]
    operation["responses"] = dict(sorted(responses.items()))
    return operation


# --- paths ---------------------------------------------------------------------------------------


def _service_paths() -> dict[str, Schema]:
    return {
        "/health": {
            "get": _operation(
                "health",
                "service",
                "Is storage reachable?",
                anonymous=True,
                ok={
                    200: _answer("Storage answers.", _ref("Health")),
                    503: {
                        "description": "Storage does not answer, or the service is misconfigured.",
                        "content": {
                            "application/json": {"schema": _ref("Health")},
                            "application/problem+json": {"schema": _ref("Problem")},
                        },
                    },
                },
            )
        },
        "/me": {
            "get": _operation(
                "me",
                "service",
                "The caller's principal and roles.",
                ok={200: _answer("The caller.", _ref("Me"))},
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "service",
                "This document.",
                anonymous=True,
                ok={
                    200: _answer(
                        "The API described in OpenAPI 3.1.",
                        {"type": "object", "description": "An OpenAPI 3.1 document."},
                        headers=("ETag",),
                    ),
                    304: {"$ref": "#/components/responses/NotModified"},
                },
                parameters=(_parameter("IfNoneMatch"),),
            )
        },
    }


def _upload_paths() -> dict[str, Schema]:
    csv_body = {"type": "string", "description": "The CSV file itself."}
    return {
        "/uploads": {
            "post": _operation(
                "create_upload",
                "uploads",
                "Start an upload: JSON {fileName, size} gets a write-only upload URL; a CSV body is stored.",
                idempotent=True,
                parameters=(
                    {
                        "name": "fileName",
                        "in": "query",
                        "description": "The file's name, for an inline CSV body.",
                        "schema": {"type": "string", "default": "upload.csv", "maxLength": 255},
                    },
                ),
                body={
                    "required": True,
                    "description": (
                        "JSON `{fileName, size}` for a short-lived SAS URL to PUT the file to (then "
                        "commit it), or the CSV file itself (at most 4 MiB), stored and committed at once."
                    ),
                    "content": {
                        "application/json": {"schema": _ref("UploadRequest")},
                        **{kind: {"schema": csv_body} for kind in sorted(CSV_TYPES)},
                    },
                },
                ok={201: _answer("The upload.", _ref("UploadCreated"), headers=("Location",))},
                errors=(413, 415),
            )
        },
        "/uploads/{id}/commit": {
            "parameters": [_parameter("UploadId")],
            "post": _operation(
                "commit_upload",
                "uploads",
                "The file is in place: queue its profiling (safe to repeat).",
                ok={
                    202: _answer(
                        "Profiling is queued; poll the Location.",
                        _ref("UploadCommitted"),
                        headers=("Location", "Retry-After"),
                    )
                },
                errors=(404, 409, 413),
            ),
        },
        "/uploads/{id}": {
            "parameters": [_parameter("UploadId")],
            "get": _operation(
                "get_upload",
                "uploads",
                "An upload's status and, once profiled, its profile.",
                parameters=(_parameter("IfNoneMatch"),),
                ok={
                    200: _answer("The upload.", _ref("Upload"), headers=("ETag",)),
                    304: {"$ref": "#/components/responses/NotModified"},
                },
                errors=(404,),
            ),
        },
    }


def _dataset_paths() -> dict[str, Schema]:
    return {
        "/datasets": {
            "post": _operation(
                "create_dataset",
                "datasets",
                "Create a dataset from a Table Schema, or from a profiled upload's inferred schema.",
                idempotent=True,
                body=_json_body(_ref("DatasetRequest")),
                ok={201: _answer("The dataset.", _ref("Dataset"), headers=("Location", "ETag"))},
                errors=(404, 413),
            ),
            "get": _operation(
                "list_datasets",
                "datasets",
                "List the caller's datasets (an admin's: all).",
                parameters=(_parameter("Cursor"), _limit()),
                ok={200: _answer("A page of datasets.", _ref("DatasetPage"))},
                errors=(400, 413),
            ),
        },
        "/datasets/{id}": {
            "parameters": [_parameter("DatasetId")],
            "get": _operation(
                "get_dataset",
                "datasets",
                "A dataset: schema, Table Storage property names, row count, status.",
                parameters=(_parameter("IfNoneMatch"),),
                ok={
                    200: _answer("The dataset.", _ref("Dataset"), headers=("ETag",)),
                    304: {"$ref": "#/components/responses/NotModified"},
                },
                errors=(404,),
            ),
            "delete": _operation(
                "delete_dataset",
                "datasets",
                "Delete a dataset with its rows, jobs, errors and files, in the background.",
                ok={
                    202: _answer(
                        "Deleting; the dataset is gone when GET answers 404.",
                        _ref("DatasetDeleting"),
                        headers=("Location", "Retry-After"),
                    )
                },
                errors=(404, 409),
            ),
        },
        "/datasets/{id}/rows": {
            "parameters": [_parameter("DatasetId")],
            "get": _operation(
                "browse_rows",
                "datasets",
                "Page through a dataset's rows.",
                parameters=(_parameter("Cursor"), _limit()),
                ok={200: _answer("A page of rows.", _ref("RowPage"))},
                errors=(400, 404, 409, 413),  # 409: a cursor from before a replace switched the rows
            ),
        },
        "/datasets/{id}/rows/{key}": {
            "parameters": [_parameter("DatasetId"), _parameter("RowKey")],
            "get": _operation(
                "get_row",
                "datasets",
                "One row by its key.",
                ok={200: _answer("The row.", _ref("Row"))},
                errors=(404,),
            ),
        },
    }


def _import_paths() -> dict[str, Schema]:
    def decision(operation_id: str, summary: str) -> Schema:
        return {
            "parameters": [_parameter("ImportId")],
            "post": _operation(
                operation_id,
                "imports",
                summary,
                ok={202: _answer("Recorded; poll the Location.", _ref("Import"), headers=("Location",))},
                errors=(404, 409),
            ),
        }

    return {
        "/datasets/{id}/imports": {
            "parameters": [_parameter("DatasetId")],
            "post": _operation(
                "start_import",
                "imports",
                "Start importing a profiled upload into the dataset (one import per dataset at a time).",
                idempotent=True,
                body=_json_body(_ref("ImportRequest")),
                ok={
                    202: _answer(
                        "Started; poll the Location.", _ref("Import"), headers=("Location", "Retry-After")
                    )
                },
                errors=(404,),
            ),
            "get": _operation(
                "list_imports",
                "imports",
                "The dataset's imports, newest first.",
                parameters=(_parameter("Cursor"), _limit(default=20, maximum=100)),
                ok={200: _answer("A page of imports.", _ref("ImportPage"))},
                errors=(400, 404, 413),
            ),
        },
        "/imports/{id}": {
            "parameters": [_parameter("ImportId")],
            "get": _operation(
                "get_import",
                "imports",
                "An import: status, phase, progress, counts and error summary.",
                parameters=(_parameter("IfNoneMatch"),),
                ok={
                    200: _answer(
                        "The import (with an ETag once it has finished).", _ref("Import"), headers=("ETag",)
                    ),
                    304: {"$ref": "#/components/responses/NotModified"},
                },
                errors=(404,),
            ),
        },
        "/imports/{id}/errors": {
            "parameters": [_parameter("ImportId")],
            "get": _operation(
                "list_errors",
                "imports",
                "The import's row errors, in row order.",
                parameters=(_parameter("Cursor"), _limit()),
                ok={200: _answer("A page of row errors.", _ref("RowErrorPage"))},
                errors=(400, 404, 413),
            ),
        },
        "/imports/{id}/errors.csv": {
            "parameters": [_parameter("ImportId")],
            "get": _operation(
                "errors_csv",
                "imports",
                "The import's row errors as a CSV file (row, column, code, message, value).",
                ok={
                    200: _answer(
                        "The errors, as an attachment.",
                        {"type": "string"},
                        headers=("Content-Disposition",),
                        media_type="text/csv",
                    )
                },
                errors=(404,),
            ),
        },
        "/imports/{id}/approve": decision("approve_import", "Approve an import awaiting review."),
        "/imports/{id}/reject": decision("reject_import", "Reject an import awaiting review."),
        "/imports/{id}/cancel": decision(
            "cancel_import", "Stop an import; replace leaves the dataset as it was."
        ),
    }


def _export_paths() -> dict[str, Schema]:
    return {
        "/datasets/{id}/exports": {
            "parameters": [_parameter("DatasetId")],
            "post": _operation(
                "start_export",
                "exports",
                "Export the dataset to a CSV file, in the background.",
                idempotent=True,
                body=_json_body(_ref("ExportRequest"), required=False),
                ok={
                    202: _answer(
                        "Started; poll the Location until it has a downloadUrl.",
                        _ref("Export"),
                        headers=("Location", "Retry-After"),
                    )
                },
                errors=(404,),
            ),
        },
        "/exports/{id}": {
            "parameters": [_parameter("ExportId")],
            "get": _operation(
                "get_export",
                "exports",
                "An export; once completed, with a fresh read-only downloadUrl.",
                ok={200: _answer("The export.", _ref("Export"))},
                errors=(404,),
            ),
        },
    }


def _ops_paths() -> dict[str, Schema]:
    return {
        "/ops/queues": {
            "get": _operation(
                "ops_queues",
                "ops",
                "Each queue's depth and its poison queue's.",
                admin=True,
                ok={
                    200: _answer("The queues.", _object({"items": {"type": "array", "items": _ref("Queue")}}))
                },
            )
        },
        "/ops/poison": {
            "get": _operation(
                "ops_poison",
                "ops",
                "Poison messages (up to 32 per queue, oldest first), of one queue or all.",
                admin=True,
                parameters=(
                    {
                        "name": "queue",
                        "in": "query",
                        "description": "Only this queue's poison messages.",
                        "schema": {"type": "string"},
                    },
                ),
                ok={
                    200: _answer(
                        "The messages.", _object({"items": {"type": "array", "items": _ref("PoisonMessage")}})
                    )
                },
                errors=(404,),
            )
        },
        "/ops/poison/{queue}/{messageId}/replay": {
            "parameters": [_parameter("Queue"), _parameter("MessageId")],
            "post": _operation(
                "ops_replay",
                "ops",
                "Send a poison message back to its queue.",
                admin=True,
                ok={202: _answer("Sent back.", _ref("PoisonReplayed"))},
                errors=(404,),
            ),
        },
        "/ops/poison/{queue}/{messageId}": {
            "parameters": [_parameter("Queue"), _parameter("MessageId")],
            "delete": _operation(
                "ops_discard",
                "ops",
                "Discard a poison message.",
                admin=True,
                ok={204: _answer("Discarded.")},
                errors=(404,),
            ),
        },
        "/ops/jobs": {
            "get": _operation(
                "ops_jobs",
                "ops",
                "Jobs (imports, exports, deletes) and uploads in a status, across all users.",
                admin=True,
                parameters=(
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": sorted(JOB_STATUSES), "default": "failed"},
                    },
                    _parameter("Cursor"),
                    _limit(),
                ),
                ok={200: _answer("A page of jobs and uploads.", _ref("OpsJobPage"))},
                errors=(400, 413),
            ),
        },
    }


# --- components ----------------------------------------------------------------------------------


def _parameters() -> dict[str, Schema]:
    def in_path(name: str, description: str) -> Schema:
        return {
            "name": name,
            "in": "path",
            "required": True,
            "description": description,
            "schema": {"type": "string"},
        }

    return {
        "UploadId": in_path("id", "An upload's id."),
        "DatasetId": in_path("id", "A dataset's id."),
        "ImportId": in_path("id", "An import's id."),
        "ExportId": in_path("id", "An export's id."),
        "RowKey": in_path("key", "A row's key, as `key` in a row, URL-encoded (a `/` in it as %2F)."),
        "Queue": in_path("queue", "A queue's name, as `name` in GET /ops/queues."),
        "MessageId": in_path("messageId", "A poison message's id."),
        "Cursor": {
            "name": "cursor",
            "in": "query",
            "description": (
                "The `next` of the previous page of this same list; leave out for the first page. "
                "A cursor from another list, or altered, is a 400."
            ),
            "schema": {"type": "string"},
        },
        "IdempotencyKey": {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "description": (
                "Send the request at most once: a repeat with the same key within 24 hours gets the first "
                "answer (with `Idempotent-Replayed: true`); the same key on a different request is a 422, "
                "and a repeat while the first is still running a 409."
            ),
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
        },
        "IfNoneMatch": {
            "name": "If-None-Match",
            "in": "header",
            "description": "An ETag from an earlier answer; 304 when it is still current.",
            "schema": {"type": "string"},
        },
    }


def _headers() -> dict[str, Schema]:
    return {
        "Location": {"description": "Where to read the resource (under /api).", "schema": {"type": "string"}},
        "RetryAfter": {
            "description": "Seconds to wait before polling or retrying.",
            "schema": {"type": "integer"},
        },
        "ETag": {
            "description": "This version of the answer, for If-None-Match.",
            "schema": {"type": "string"},
        },
        "IdempotentReplayed": {
            "description": "Present on a repeat: this is the first answer for the same Idempotency-Key.",
            "schema": {"const": "true"},
        },
        "ContentDisposition": {
            "description": "`attachment` with a file name.",
            "schema": {"type": "string"},
        },
        "WWWAuthenticate": {"description": "Sign-in is required.", "schema": {"type": "string"}},
    }


def _error_responses() -> dict[str, Schema]:
    problem = {"application/problem+json": {"schema": _ref("Problem")}}
    answers: dict[str, Schema] = {
        name: {"description": description, "content": problem}
        for name, description in ERROR_RESPONSES.values()
    }
    answers["Unauthorized"]["headers"] = {"WWW-Authenticate": _header("WWWAuthenticate")}
    answers["TooManyRequests"]["headers"] = {"Retry-After": _header("RetryAfter")}
    answers["NotModified"] = {
        "description": "The caller's copy (If-None-Match) is current.",
        "headers": {"ETag": _header("ETag")},
    }
    return answers


def _schemas() -> dict[str, Schema]:
    return {
        **_common_schemas(),
        **_upload_schemas(),
        **_dataset_schemas(),
        **_import_schemas(),
        **_export_schemas(),
        **_ops_schemas(),
    }


def _common_schemas() -> dict[str, Schema]:
    return {
        "Problem": {
            "description": "An RFC 9457 problem.",
            **_object(
                {
                    "type": {"type": "string", "description": "Always `about:blank`."},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string", "description": "What is wrong, for a person."},
                    "instance": {"type": "string", "description": "The request's path."},
                    "problems": {
                        "type": "array",
                        "description": "Each problem, for schema, mapping and request checks.",
                        "items": _ref("ProblemItem"),
                    },
                },
                required=("type", "title", "status", "detail", "instance"),
            ),
        },
        "ProblemItem": _object(
            {
                "field": {"type": ["string", "null"], "description": "The field or member concerned."},
                "code": {"type": "string"},
                "message": {"type": "string"},
            },
            required=("code",),
        ),
        "Health": _object(
            {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "storage": {"type": "string", "enum": ["ok", "unreachable"]},
            }
        ),
        "Me": _object(
            {
                "userId": {"type": "string"},
                "userDetails": {"type": "string"},
                "identityProvider": {"type": "string"},
                "userRoles": {"type": "array", "items": {"type": "string"}},
                "isAdmin": {"type": "boolean"},
            }
        ),
        "TableSchema": {
            "description": (
                "A Frictionless Table Schema. The server checks it whole and lists every problem in a "
                "422; `foreignKeys` and unknown properties are ignored."
            ),
            **_object(
                {
                    "fields": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_FIELDS,
                        "items": _ref("TableSchemaField"),
                    },
                    "missingValues": {"type": "array", "items": {"type": "string"}, "default": [""]},
                    "primaryKey": {
                        "oneOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        ]
                    },
                },
                required=("fields",),
            ),
        },
        "TableSchemaField": _object(
            {
                "name": {"type": "string"},
                "type": {"type": "string", "enum": sorted(CONSTRAINTS_BY_TYPE), "default": "string"},
                "format": {
                    "type": "string",
                    "description": (
                        f"For strings one of {', '.join(STRING_FORMATS)}; for date, datetime and time "
                        "`default` or a strptime pattern."
                    ),
                },
                "title": {"type": "string"},
                "description": {"type": "string"},
                "constraints": {
                    "type": "object",
                    "description": "Bounds and enum items are read as the field's type.",
                    "properties": {
                        "required": {"type": "boolean"},
                        "unique": {"type": "boolean"},
                        "minimum": {},
                        "maximum": {},
                        "exclusiveMinimum": {},
                        "exclusiveMaximum": {},
                        "minLength": {"type": "integer", "minimum": 0},
                        "maxLength": {"type": "integer", "minimum": 0},
                        "pattern": {"type": "string"},
                        "enum": {"type": "array"},
                    },
                },
                "trueValues": {"type": "array", "items": {"type": "string"}},
                "falseValues": {"type": "array", "items": {"type": "string"}},
                "bareNumber": {"type": "boolean"},
                "decimalChar": {"type": "string"},
                "groupChar": {"type": "string"},
            },
            required=("name",),
        ),
    }


def _upload_schemas() -> dict[str, Schema]:
    statuses = [uploads.PENDING, uploads.UPLOADED, uploads.PROFILING, uploads.PROFILED, uploads.FAILED]
    return {
        "UploadStatus": {"type": "string", "enum": statuses},
        "UploadRequest": _object(
            {
                "fileName": {"type": "string", "minLength": 1, "maxLength": 255},
                "size": {"type": "integer", "minimum": 0, "description": "The file's size in bytes."},
            }
        ),
        "UploadCreated": _object(
            {
                "id": {"type": "string"},
                "status": _ref("UploadStatus"),
                "fileName": {"type": "string"},
                "uploadUrl": {
                    "type": "string",
                    "format": "uri",
                    "description": "A write-only SAS URL for the file's blob (JSON requests only).",
                },
                "size": {"type": "integer", "description": "The stored body's size (inline uploads only)."},
                "expiresAt": {"type": ["string", "null"], "format": "date-time"},
                "maxBytes": {"type": "integer"},
            },
            required=("id", "status", "fileName", "expiresAt", "maxBytes"),
        ),
        "UploadCommitted": _object({"id": {"type": "string"}, "status": _ref("UploadStatus")}),
        "Upload": {
            "description": "An upload; the profile's members appear once it is `profiled`.",
            **_object(
                {
                    "id": {"type": "string"},
                    "status": _ref("UploadStatus"),
                    "fileName": {"type": "string"},
                    "size": {"type": ["integer", "null"]},
                    "createdAt": {"type": "string", "format": "date-time"},
                    "updatedAt": {"type": "string", "format": "date-time"},
                    "error": {"type": "string", "description": "Why profiling failed."},
                    "encoding": {"type": "string"},
                    "dialect": _ref("Dialect"),
                    "rowCount": {"type": "integer"},
                    "raggedRows": {"type": "integer"},
                    "sampledRows": {"type": "integer"},
                    "columns": {"type": "array", "items": _ref("ColumnProfile")},
                    "preview": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                    "inferredSchema": _ref("TableSchema"),
                },
                required=("id", "status", "fileName", "size", "createdAt", "updatedAt"),
            ),
        },
        "Dialect": _object(
            {
                "delimiter": {"type": "string"},
                "quoteChar": {"type": "string"},
                "header": {"type": "boolean"},
                "doubleQuote": {"type": "boolean"},
                "lineTerminator": {"type": "string"},
                "sepLine": {
                    "type": "boolean",
                    "description": "The file opens with Excel's `sep=X` line, which names the delimiter "
                    "and is not a record.",
                },
            }
        ),
        "ColumnProfile": _object(
            {
                "name": {"type": "string"},
                "type": {"type": "string"},
                "format": {"type": ["string", "null"]},
                "nullCount": {"type": "integer"},
                "distinct": {"type": "integer"},
                "distinctExact": {"type": "boolean"},
                "min": {"type": ["string", "number", "null"]},
                "max": {"type": ["string", "number", "null"]},
            }
        ),
    }


def _dataset_schemas() -> dict[str, Schema]:
    name = {"type": "string", "minLength": 1, "maxLength": datasets.MAX_NAME_CHARS}
    description = {"type": ["string", "null"], "maxLength": datasets.MAX_DESCRIPTION_CHARS}
    return {
        "DatasetRequest": {
            "description": "Give either `schema` or `fromUpload`, not both.",
            "oneOf": [
                _object(
                    {"name": name, "description": description, "schema": _ref("TableSchema")},
                    required=("name", "schema"),
                ),
                _object(
                    {
                        "name": name,
                        "description": description,
                        "fromUpload": {"type": "string", "description": "A profiled upload's id."},
                        "primaryKey": {
                            "description": "Set on the upload's inferred schema.",
                            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                        },
                    },
                    required=("name", "fromUpload"),
                ),
            ],
        },
        "Dataset": _object(
            {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "description": {"type": "string"},
                "status": {"type": "string", "enum": [datasets.ACTIVE, datasets.DELETING]},
                "schema": _ref("TableSchema"),
                "properties": {
                    "type": "object",
                    "description": "Field name → Table Storage property name.",
                    "additionalProperties": {"type": "string"},
                },
                "rowCount": {"type": "integer"},
                "activeJob": {"type": ["string", "null"], "description": "The import or delete holding it."},
                "createdAt": {"type": "string", "format": "date-time"},
                "updatedAt": {"type": "string", "format": "date-time"},
            }
        ),
        "DatasetPage": _page("Dataset"),
        "DatasetDeleting": _object(
            {
                "id": {"type": "string"},
                "status": {"const": datasets.DELETING},
                "jobId": {"type": "string"},
            }
        ),
        "Row": _object(
            {
                "key": {"type": "string"},
                "values": {
                    "type": "object",
                    "description": "Field → value, typed per the schema (non-finite numbers as text).",
                    "additionalProperties": True,
                },
            }
        ),
        "RowPage": _page("Row"),
    }


def _import_schemas() -> dict[str, Schema]:
    statuses = [
        jobs.QUEUED,
        jobs.VALIDATING,
        jobs.AWAITING_REVIEW,
        jobs.APPLYING,
        jobs.COMPLETED,
        jobs.FAILED,
        jobs.REJECTED,
        jobs.CANCELLED,
        jobs.EXPIRED,
    ]
    count = {"type": ["integer", "null"]}
    moment = {"type": "string", "format": "date-time"}
    return {
        "ImportRequest": _object(
            {
                "uploadId": {"type": "string", "description": "A profiled upload's id."},
                "mode": {"type": "string", "enum": list(imports.MODES), "default": "insert"},
                "mapping": {
                    "type": "object",
                    "description": "Field → CSV column (null: leave it empty); other fields match by name.",
                    "additionalProperties": {"type": ["string", "null"]},
                },
                "autoApply": {
                    "type": "boolean",
                    "default": False,
                    "description": "Apply without review when no row is invalid.",
                },
            },
            required=("uploadId",),
        ),
        "Import": _object(
            {
                "id": {"type": "string"},
                "datasetId": {"type": "string"},
                "uploadId": {"type": "string"},
                "fileName": {"type": "string"},
                "mode": {"type": "string", "enum": list(imports.MODES)},
                "autoApply": {"type": "boolean"},
                "status": {"type": "string", "enum": statuses},
                "phase": {"type": "string"},
                "progress": _object(
                    {"done": {"type": "integer"}, "total": {"type": "integer"}, "percent": {"type": "number"}}
                ),
                "counts": _object(
                    {key: count for key in ("rows", "valid", "invalid", "inserted", "updated", "unchanged")}
                ),
                "errorSummary": {
                    "type": "array",
                    "items": _object(
                        {
                            "code": {"type": "string"},
                            "column": {"type": "string"},
                            "count": {"type": "integer"},
                        }
                    ),
                },
                "errorsStored": count,
                "mapping": {
                    "type": "object",
                    "description": "The mapping used: `{fields: {field: column or null}, ignored}`.",
                    "properties": {
                        "fields": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                        "ignored": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "createdAt": moment,
                "updatedAt": moment,
                "links": _object(
                    {key: {"type": "string"} for key in ("self", "errors", "errorsCsv", "dataset")}
                ),
                "expiresAt": {**moment, "description": "When an undecided review expires."},
                "decidedAt": moment,
                "decision": {"type": "string", "enum": list(imports.DECISIONS.values())},
                "error": {"type": "string", "description": "Why the import failed."},
                "cancelRequested": {"const": True},
            },
            required=(
                "id",
                "datasetId",
                "uploadId",
                "fileName",
                "mode",
                "autoApply",
                "status",
                "phase",
                "progress",
                "counts",
                "errorSummary",
                "errorsStored",
                "mapping",
                "createdAt",
                "updatedAt",
                "links",
            ),
        ),
        "ImportPage": _page("Import"),
        "RowError": _object(
            {
                "row": {"type": "integer", "description": "The data row's number, from 1."},
                "column": {"type": "string"},
                "code": {
                    "type": "string",
                    "description": (
                        "type, required, minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength, "
                        "maxLength, pattern, enum, primaryKey, unique, missingCell, extraCell, blankRow, "
                        "keyExists (an insert's key the dataset has), and at apply time rowTooLarge."
                    ),
                },
                "message": {"type": "string"},
                "value": {"type": "string"},
            }
        ),
        "RowErrorPage": _page("RowError"),
    }


def _export_schemas() -> dict[str, Schema]:
    return {
        "ExportRequest": _object(
            {
                "safeCells": {
                    "type": "boolean",
                    "default": True,
                    "description": "Prefix text cells a spreadsheet would run as formulas with `'`.",
                }
            },
            required=(),
        ),
        "Export": _object(
            {
                "id": {"type": "string"},
                "datasetId": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": [jobs.QUEUED, jobs.RUNNING, jobs.COMPLETED, jobs.FAILED],
                },
                "rows": {"type": ["integer", "null"]},
                "size": {"type": ["integer", "null"], "description": "The file's size in bytes."},
                "safeCells": {"type": "boolean"},
                "createdAt": {"type": "string", "format": "date-time"},
                "updatedAt": {"type": "string", "format": "date-time"},
                "error": {"type": "string"},
                "downloadUrl": {"type": "string", "format": "uri", "description": "A read-only SAS URL."},
                "downloadExpiresAt": {"type": "string", "format": "date-time"},
            },
            required=("id", "datasetId", "status", "rows", "size", "safeCells", "createdAt", "updatedAt"),
        ),
    }


def _ops_schemas() -> dict[str, Schema]:
    return {
        "Queue": _object(
            {"name": {"type": "string"}, "depth": {"type": "integer"}, "poison": {"type": "integer"}}
        ),
        "PoisonMessage": _object(
            {
                "queue": {"type": "string"},
                "id": {"type": "string"},
                "insertedAt": {"type": ["string", "null"], "format": "date-time"},
                "dequeueCount": {"type": ["integer", "null"]},
                "body": {"type": "string"},
            }
        ),
        "PoisonReplayed": _object(
            {"queue": {"type": "string"}, "id": {"type": "string"}, "replayed": {"const": True}}
        ),
        "OpsJob": _object(
            {
                "kind": {"type": "string", "enum": [jobs.IMPORT, jobs.EXPORT, jobs.DELETE, "upload"]},
                "id": {"type": "string"},
                "datasetId": {"type": "string", "description": "Jobs only."},
                "owner": {"type": "string"},
                "status": {"type": "string"},
                "error": {"type": ["string", "null"]},
                "lastError": {"type": ["string", "null"], "description": "Uploads only: the last attempt's."},
                "updatedAt": {"type": ["string", "null"], "format": "date-time"},
            },
            required=("kind", "id", "owner", "status", "error", "updatedAt"),
        ),
        "OpsJobPage": _page("OpsJob"),
    }
