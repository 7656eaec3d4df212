"""Route templates: parameters, constraints, optional and catch-all parts, precedence, methods."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devhost.routes import Router, RouteTemplate, RouteTemplateError

GUID = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("api/health", "api/health", {}),
        ("api/health", "API/Health", {}),
        ("api/health", "api/health/", {}),
        ("api/health", "api/healthz", None),
        ("api/items/{id}", "api/items/abc", {"id": "abc"}),
        ("api/items/{id}", "api/items", None),
        ("api/items/{id}", "api/items/a/b", None),
        ("api/items/{id:int}", "api/items/42", {"id": "42"}),
        ("api/items/{id:int}", "api/items/-7", {"id": "-7"}),
        ("api/items/{id:int}", "api/items/4x", None),
        ("api/items/{id:int}", "api/items/2147483648", None),
        ("api/items/{id:long}", "api/items/2147483648", {"id": "2147483648"}),
        ("api/n/{name:alpha}", "api/n/Alice", {"name": "Alice"}),
        ("api/n/{name:alpha}", "api/n/al1ce", None),
        ("api/g/{id:guid}", f"api/g/{GUID}", {"id": GUID}),
        ("api/g/{id:guid}", f"api/g/{{{GUID}}}", {"id": f"{{{GUID}}}"}),
        ("api/g/{id:guid}", f"api/g/{GUID.replace('-', '')}", {"id": GUID.replace("-", "")}),
        ("api/g/{id:guid}", "api/g/not-a-guid", None),
        ("api/b/{flag:bool}", "api/b/TRUE", {"flag": "TRUE"}),
        ("api/b/{flag:bool}", "api/b/yes", None),
        ("api/d/{x:double}", "api/d/1.5e3", {"x": "1.5e3"}),
        ("api/d/{x:double}", "api/d/abc", None),
        ("api/dt/{when:datetime}", "api/dt/2024-02-29", {"when": "2024-02-29"}),
        ("api/dt/{when:datetime}", "api/dt/2023-02-29", None),
        ("api/r/{n:range(1,10)}", "api/r/10", {"n": "10"}),
        ("api/r/{n:range(1,10)}", "api/r/11", None),
        ("api/m/{n:int:min(2)}", "api/m/1", None),
        ("api/m/{n:int:min(2)}", "api/m/2", {"n": "2"}),
        ("api/l/{s:minlength(2):maxlength(3)}", "api/l/abcd", None),
        ("api/l/{s:length(3)}", "api/l/abc", {"s": "abc"}),
        ("api/x/{code:regex(^[a-z]{{2}}\\d+$)}", "api/x/ab12", {"code": "ab12"}),
        ("api/x/{code:regex(^[a-z]{{2}}\\d+$)}", "api/x/abc12", None),
        ("api/opt/{x?}", "api/opt", {}),
        ("api/opt/{x?}", "api/opt/1", {"x": "1"}),
        ("api/def/{page=1}", "api/def", {"page": "1"}),
        ("api/def/{page=1}", "api/def/3", {"page": "3"}),
        ("api/files/{*path}", "api/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("api/files/{*path}", "api/files", {}),
        ("api/files/{*path}", "api/files/", {}),
        ("api/files/{*path}", "api/files/a/", {"path": "a/"}),  # a catch-all keeps its trailing "/"
        ("api/files/{*path}", "/api/files/a//", {"path": "a//"}),
        ("api/items/{id}", "api/items/abc/", {"id": "abc"}),  # elsewhere a trailing "/" is optional
        ("api/files/{**path}", "api/files/x/y", {"path": "x/y"}),
        ("api/{name}.{ext}", "api/report.v2.csv", {"name": "report.v2", "ext": "csv"}),
        ("api/{name}.{ext}", "api/report", None),
        ("", "", {}),
        ("{x?}", "", {}),
    ],
)
def test_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate.parse(template).match(path) == expected


@pytest.mark.parametrize(
    "template",
    ["api/{id:nope}", "api/{*rest}/more", "api/{a}/{a}", "api/{x?}/more", "api/{id", "api/id}", "api/{1x}"],
)
def test_malformed_templates_are_refused(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        RouteTemplate.parse(template)


def test_precedence_literal_then_constrained_then_plain_then_catch_all() -> None:
    router: Router[str] = Router()
    for template in ["api/{*rest}", "api/items/{name}", "api/items/{id:int}", "api/items/new"]:
        router.add(template, None, template)

    def target(path: str) -> str | None:
        found = router.match("GET", path)
        return found[0].target if found else None

    assert target("api/items/new") == "api/items/new"
    assert target("api/items/5") == "api/items/{id:int}"
    assert target("api/items/five") == "api/items/{name}"
    assert target("api/other/thing") == "api/{*rest}"


def test_constraint_mismatch_falls_through_to_the_next_route_or_none() -> None:
    router: Router[str] = Router()
    router.add("api/items/{id:int}", None, "int")
    router.add("api/items/{name:alpha}", None, "alpha")
    assert router.match("GET", "api/items/a1") is None
    found = router.match("GET", "api/items/abc")
    assert found is not None and found[0].target == "alpha"


def test_method_mismatch_is_no_match_so_404_not_405() -> None:
    # The Functions host answers 404 when only the method differs (azure-functions-host#10098).
    router: Router[str] = Router()
    router.add("api/things", ["get", "POST"], "things")
    assert router.match("DELETE", "api/things") is None
    found = router.match("post", "api/things")
    assert found is not None and found[0].target == "things"


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_int_constraint_accepts_exactly_int32(number: int) -> None:
    matched = RouteTemplate.parse("api/{id:int}").match(f"api/{number}")
    assert (matched is not None) == (-(2**31) <= number <= 2**31 - 1)
