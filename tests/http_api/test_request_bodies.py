"""JSON request bodies: anything that could not be stored and answered again is refused with a 400."""

from __future__ import annotations

import azure.functions as func
import pytest

from core.errors import BadRequest
from http_api.responses import read_json_object


def request(body: bytes) -> func.HttpRequest:
    return func.HttpRequest("POST", "http://127.0.0.1/api/datasets", body=body, headers={})


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"maximum": NaN}', "NaN is not a JSON number"),
        (b'{"maximum": Infinity}', "Infinity is not a JSON number"),
        (b'{"minimum": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"maximum": 1e999}', "1e999 is too large for a number"),
        (b'{"name": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"name": "ok", "fields": [{"name": "\\udfff"}]}', "lone UTF-16 surrogate"),
        # json.loads decodes bytes with "surrogatepass": a surrogate written as raw bytes gets through too
        (b'{"name": "\xed\xa0\x80"}', "lone UTF-16 surrogate"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"name": ', "not valid JSON"),
    ],
)
def test_bodies_that_could_not_be_answered_again_are_refused(body: bytes, detail: str) -> None:
    with pytest.raises(BadRequest) as refused:
        read_json_object(request(body))
    assert refused.value.status == 400
    assert detail in refused.value.detail


def test_ordinary_bodies_are_read_as_they_are() -> None:
    body = b'{"name": "\\ud83d\\ude00 caf\\u00e9", "maximum": 1.5e300, "big": 100000000000000000000000}'
    assert read_json_object(request(body)) == {
        "name": "😀 café",
        "maximum": 1.5e300,
        "big": 100_000_000_000_000_000_000_000,
    }
