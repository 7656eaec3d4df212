"""The OpenAPI document: valid OpenAPI 3.1, and the same routes, methods and options as the app."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from http_api.openapi import SECURITY_SCHEME, openapi, openapi_document

REPO_ROOT = Path(__file__).resolve().parents[2]
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})

Operations = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def operations_of(document: dict[str, Any]) -> Operations:
    """Map (path, METHOD) to each operation of the document."""
    return {
        (path, method.upper()): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def registered_routes(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], str]:
    """Import Loadbay's function_app and map (/route, METHOD) to the name of each HTTP function."""
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    # Under its own name: devhost tests put other apps' function_app modules in sys.modules.
    spec = importlib.util.spec_from_file_location("loadbay_function_app", REPO_ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    routes: dict[tuple[str, str], str] = {}
    for function in module.app.get_functions():
        for binding in json.loads(function.get_function_json())["bindings"]:
            if binding["type"] == "httpTrigger":
                for method in binding["methods"]:
                    # A catch-all {*key} is a plain {key} to OpenAPI (clients send its "/" as %2F).
                    route = "/" + binding["route"].replace("{*", "{")
                    routes[route, method.upper()] = function.get_function_name()
    return routes


def endpoint_options() -> dict[str, dict[str, Any]]:
    """Read each handler's @endpoint(...) keywords from the sources of http_api."""
    options: dict[str, dict[str, Any]] = {}
    for source in sorted((REPO_ROOT / "http_api").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "endpoint":
                    options[node.name] = {
                        kw.arg: ast.literal_eval(kw.value) for kw in decorator.keywords if kw.arg != "accepts"
                    }
    return options


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document, cls=OpenAPIV31SpecValidator)  # raises, naming the problem, when it is not
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "Loadbay"


def test_every_http_route_is_described_with_its_methods_and_nothing_else(
    document: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = registered_routes(monkeypatch)
    described = {key: operation["operationId"] for key, operation in operations_of(document).items()}
    assert ("/openapi.json", "GET") in routes
    # The operation id is the handler's name, so a route described under the wrong path shows here too.
    assert described == routes


def test_the_server_url_is_the_hosts_route_prefix(document: dict[str, Any]) -> None:
    host = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    assert document["servers"] == [{"url": f"/{prefix}"}]


def test_security_and_idempotency_follow_each_handlers_endpoint_options(document: dict[str, Any]) -> None:
    options = endpoint_options()
    operations = operations_of(document)
    assert {operation["operationId"] for operation in operations.values()} == set(options)
    for (path, method), operation in operations.items():
        flags = options[operation["operationId"]]
        where = f"{method} {path}"
        refs = {parameter.get("$ref", "") for parameter in operation.get("parameters", [])}
        idempotent = "#/components/parameters/IdempotencyKey" in refs
        assert idempotent == flags.get("idempotent", False), where
        if flags.get("anonymous"):
            assert operation["security"] == [], where
            assert "401" not in operation["responses"], where
        elif flags.get("admin"):
            assert operation["security"] == [{SECURITY_SCHEME: ["admin"]}], where
            assert {"401", "403"} <= set(operation["responses"]), where
        else:
            assert "security" not in operation, where  # the document's default: a signed-in caller
            assert "401" in operation["responses"], where


def test_every_path_parameter_is_declared(document: dict[str, Any]) -> None:
    components = document["components"]["parameters"]

    def resolve(parameter: dict[str, Any]) -> dict[str, Any]:
        ref = parameter.get("$ref")
        return components[ref.removeprefix("#/components/parameters/")] if ref else parameter

    for path, item in document["paths"].items():
        in_template = set(re.findall(r"\{([^}]+)\}", path))
        for method in HTTP_METHODS & set(item):
            declared = [
                resolve(parameter)
                for parameter in [*item.get("parameters", []), *item[method].get("parameters", [])]
            ]
            in_path = {parameter["name"] for parameter in declared if parameter["in"] == "path"}
            assert in_path == in_template, f"{method.upper()} {path}"
            assert all(parameter["required"] for parameter in declared if parameter["in"] == "path")


def test_every_schema_reference_names_a_schema(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    for kind, name in re.findall(r'"#/components/(\w+)/(\w+)"', text):
        assert name in document["components"][kind], f"#/components/{kind}/{name}"


def test_the_route_answers_the_document_and_304_for_a_current_etag() -> None:
    handler = openapi.build().get_user_function()
    url = "http://localhost/api/openapi.json"
    answer = handler(func.HttpRequest("GET", url, body=b"", headers={}))
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    assert json.loads(answer.get_body()) == openapi_document()
    etag = answer.headers["ETag"]
    again = handler(func.HttpRequest("GET", url, body=b"", headers={"If-None-Match": etag}))
    assert again.status_code == 304
    assert again.headers["ETag"] == etag
    other = handler(func.HttpRequest("GET", url, body=b"", headers={"If-None-Match": '"stale"'}))
    assert other.status_code == 200
