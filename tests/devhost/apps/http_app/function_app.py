"""Sample app for devhost HTTP tests: routes, constraints, auth levels, errors, outputs."""

from __future__ import annotations

import json

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="health", methods=["GET"])
def http_health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@app.route(route="echo/{id:int}/{name?}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    payload = {
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "route": dict(req.route_params),
        "headers": {key: req.headers[key] for key in req.headers},
        "body": req.get_body().decode("utf-8"),
    }
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


@app.route(route="items/new")
def item_new(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("literal")


@app.route(route="items/{id:int}")
def item_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"int {req.route_params['id']}")


@app.route(route="items/{name:alpha}")
def item_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"alpha {req.route_params['name']}")


@app.route(route="files/{*path}")
def files(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"path={req.route_params.get('path', '')}")


@app.route(route="secret", auth_level=func.AuthLevel.FUNCTION)
def secret(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("function level ok")


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin level ok")


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("database password is hunter2")


@app.route(route="bad-return")
def bad_return(req: func.HttpRequest) -> func.HttpResponse:
    return 42  # type: ignore[return-value]


@app.route(route="async-hello")
async def async_hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.params.get('name', 'nobody')}")


@app.route(route="custom", methods=["GET"])
def custom(req: func.HttpRequest) -> func.HttpResponse:
    response = func.HttpResponse(
        json.dumps({"created": True}),
        status_code=201,
        mimetype="application/json",
        headers={"X-Custom": "yes"},
    )
    response.headers.add("Set-Cookie", "a=1")
    response.headers.add("Set-Cookie", "b=2")
    return response


@app.route(route="size", methods=["POST"])
def size(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(str(len(req.get_body())))


@app.route(route="enqueue", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="%OUTPUT_QUEUE%", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode("utf-8"))
    return func.HttpResponse(status_code=202)


@app.route(route="rows/{key}", methods=["PUT"])
@app.table_output(
    arg_name="row", table_name="%TABLE_NAME%", connection="AzureWebJobsStorage", partition_key="sample"
)
def put_row(req: func.HttpRequest, row: func.Out[str]) -> func.HttpResponse:
    row.set(json.dumps({"RowKey": req.route_params["key"], "value": req.get_body().decode("utf-8")}))
    return func.HttpResponse(status_code=204)


@app.blob_trigger(arg_name="blob", path="incoming/{name}", connection="AzureWebJobsStorage")
def watch_blobs(blob: func.InputStream) -> None:
    """A trigger kind devhost does not run: it must be reported, not crash the host."""


@app.event_hub_message_trigger(arg_name="event", event_hub_name="hub", connection="EventHubConnection")
def watch_events(event: func.EventHubEvent) -> None:
    """Another unsupported kind, to check they are all reported on one line."""
