"""Turn results and errors into HTTP answers: JSON, RFC 9457 problems, ETags, and the auth wrapper."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import azure.functions as func
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from core import idempotency
from core.auth import PRINCIPAL_HEADER, Principal, principal_from_header
from core.errors import BadRequest, Forbidden, LoadbayError, RetryLater, TooManyRequests, UnsupportedMediaType
from core.paging import bind_cursor, open_cursor
from core.ratelimit import RateLimiter
from core.runtime import runtime
from core.settings import SettingsError
from core.telemetry import function_span, mark_failed

log = logging.getLogger("loadbay.http")

Handler = Callable[[func.HttpRequest, Principal], func.HttpResponse]
IDEMPOTENCY_HEADER = "Idempotency-Key"


def json_response(
    body: Any,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    version: str | None = None,
) -> func.HttpResponse:
    """Answer with JSON; with a `version` (a storage ETag), tag the answer so clients can revalidate."""
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    all_headers = dict(headers or {})  # Cache-Control: no-store unless tagged (see _secured)
    if version is not None:
        all_headers.update(_validators(version))
    return func.HttpResponse(
        payload, status_code=status, headers=all_headers, mimetype="application/json", charset="utf-8"
    )


def page_response(
    request: func.HttpRequest, scope: str, list_page: Callable[[str | None], dict[str, Any]]
) -> func.HttpResponse:
    """Answer one page of a list whose cursors belong to `scope` (see core.paging.bind_cursor):
    `list_page` gets the position the request's cursor holds."""
    page = list_page(open_cursor(scope, request.params.get("cursor")))
    return json_response(bind_cursor(scope, page))


def not_modified(request: func.HttpRequest, version: str) -> func.HttpResponse | None:
    """Answer 304 when the caller already holds this version (If-None-Match), before any work is done."""
    headers = _validators(version)
    if headers["ETag"] in _if_none_match(request):
        return func.HttpResponse(status_code=304, headers=headers)
    return None


def _validators(version: str) -> dict[str, str]:
    # Storage ETags hold timestamps; hashing them keeps storage details out of the API.
    tag = '"' + hashlib.sha256(version.encode()).hexdigest()[:32] + '"'
    return {"ETag": tag, "Cache-Control": "private, no-cache"}


def problem_response(error: LoadbayError, request: func.HttpRequest) -> func.HttpResponse:
    """Answer with an RFC 9457 problem describing `error`."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": _path(request),
    }
    if error.problems:
        body["problems"] = error.problems
    headers: dict[str, str] = {}
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="loadbay"'
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=error.status,
        headers=headers,
        mimetype="application/problem+json",
        charset="utf-8",
    )


def endpoint(
    *,
    anonymous: bool = False,
    admin: bool = False,
    idempotent: bool = False,
    accepts: frozenset[str] = frozenset(),
) -> Callable[[Handler], Callable[..., Any]]:
    """Wrap a handler: authenticate (unless anonymous), authorize, rate-limit and map errors to problems.

    With ``idempotent``, a request carrying an ``Idempotency-Key`` header is answered once; repeats get
    the first answer (see ``core.idempotency``).

    A request that changes something must send JSON, or one of the media types in ``accepts``, or no
    body at all: anything else is a 415. A page of another site can send, without the browser first
    asking this origin's leave, only a form's types (``application/x-www-form-urlencoded``,
    ``multipart/form-data``, ``text/plain``) or a body that names no type (a Blob, ``sendBeacon``), so
    no such request can act on a signed-in visitor's behalf.
    """

    def wrap(handler: Handler) -> Callable[..., Any]:
        def run(req: func.HttpRequest) -> func.HttpResponse:
            with function_span(
                handler.__name__,
                traceparent=req.headers.get("traceparent"),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": req.method},
            ) as span:
                answer = _secured(respond(req))
                span.set_attribute("http.response.status_code", answer.status_code)
                if answer.status_code >= 500:
                    mark_failed(span, f"HTTP {answer.status_code}")
                return answer

        def respond(req: func.HttpRequest) -> func.HttpResponse:
            try:
                principal = (
                    _anonymous() if anonymous else principal_from_header(req.headers.get(PRINCIPAL_HEADER))
                )
                if admin and not principal.is_admin:
                    raise Forbidden("This needs the admin role.")
                if principal.user_id:
                    trace.get_current_span().set_attribute("enduser.id", principal.user_id)
                    _rate_limiter().check(principal.user_id)
                if req.method not in SAFE_METHODS:
                    _check_body_type(req, accepts)
                key = req.headers.get(IDEMPOTENCY_HEADER)
                if idempotent and key is not None:
                    return _once(req, principal, key, handler)
                return handler(req, principal)
            except LoadbayError as error:
                return problem_response(error, req)
            except SettingsError:
                log.exception("Loadbay is misconfigured")
                return problem_response(
                    RetryLater("The service is misconfigured; the operators have been told."), req
                )
            except Exception:
                log.exception("Unhandled error in %s %s", req.method, _path(req))
                return problem_response(
                    _Unexpected("Something went wrong on our side; try again later."), req
                )

        # The Functions worker matches parameters to bindings by name, so `run` keeps the signature
        # (req) and only borrows the handler's name, which becomes the function's name.
        run.__name__ = handler.__name__
        run.__qualname__ = handler.__qualname__
        run.__doc__ = handler.__doc__
        return run

    return wrap


# Every API answer is private to its caller and never to be content-sniffed into something runnable.
_ANSWER_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _secured(answer: func.HttpResponse) -> func.HttpResponse:
    """Add the headers every answer needs, keeping any a handler chose (an ETag's Cache-Control)."""
    for name, value in _ANSWER_HEADERS.items():
        if name not in answer.headers:
            answer.headers[name] = value
    return answer


def _once(req: func.HttpRequest, principal: Principal, key: str, handler: Handler) -> func.HttpResponse:
    """Run a handler at most once per Idempotency-Key; replay its answer for repeats."""
    storage = runtime().storage
    # What the handler reads: a text/csv upload takes its file name from the query string.
    request = idempotency.fingerprint(
        req.method, _target(req), req.get_body() or b"", content_type=req.headers.get("content-type") or ""
    )
    stored = idempotency.claim(storage, user_id=principal.user_id, key=key, request=request)
    if stored is not None:
        headers = {
            "Idempotent-Replayed": "true",
            **({"Location": stored.location} if stored.location else {}),
            **({"Retry-After": "1"} if stored.status == 202 else {}),  # the first 202 said when to poll
        }
        return func.HttpResponse(
            stored.body,
            status_code=stored.status,
            headers=headers,
            mimetype="application/json",
            charset="utf-8",
        )
    try:
        answer = handler(req, principal)
    except BaseException:
        idempotency.release(storage, user_id=principal.user_id, key=key)
        raise
    if answer.status_code >= 400:
        idempotency.release(storage, user_id=principal.user_id, key=key)
    else:
        stored_answer = idempotency.answer_of(
            answer.status_code, answer.get_body(), answer.headers.get("Location")
        )
        idempotency.remember(storage, user_id=principal.user_id, key=key, answer=stored_answer)
    return answer


@functools.cache
def _rate_limiter() -> RateLimiter:
    return RateLimiter(runtime().settings.requests_per_minute)


def read_json_object(req: func.HttpRequest) -> dict[str, Any]:
    """Parse the request body as a JSON object, or raise BadRequest saying what is wrong (415 for a body
    that says it is not JSON)."""
    _check_body_type(req, frozenset())
    try:
        body = json.loads(req.get_body() or b"null", parse_constant=_refuse_constant, parse_float=_finite)
    except ValueError as error:
        raise BadRequest(f"The body is not valid JSON: {error}.") from error
    except RecursionError as error:
        raise BadRequest("The body nests JSON too deeply.") from error
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    try:  # "\ud800" is valid JSON but no character: it could be stored, and then never answered
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadRequest(
            "The body has a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair); "
            "text must be valid Unicode."
        ) from error
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text[:40]} is too large for a number")
    return number


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _check_body_type(req: func.HttpRequest, accepts: frozenset[str]) -> None:
    """Refuse a body that is not JSON or of a type in `accepts` (or a body that names no type) with a 415."""
    kind = media_type(req)
    if kind == "application/json" or kind.endswith("+json") or kind in accepts:
        return
    if kind:
        raise UnsupportedMediaType(f"Send JSON (Content-Type: application/json); got {kind}.")
    if req.get_body():
        raise UnsupportedMediaType("Send JSON (Content-Type: application/json); got a body of no type.")


def media_type(req: func.HttpRequest) -> str:
    """Return the request's media type without parameters, lower-cased."""
    return (req.headers.get("content-type") or "").split(";", 1)[0].strip().lower()


def api_path(*parts: str) -> str:
    """Build a Location path under the API prefix."""
    return "/api/" + "/".join(parts)


def _anonymous() -> Principal:
    return Principal(user_id="", user_details="", identity_provider="", roles=frozenset())


def _if_none_match(request: func.HttpRequest) -> set[str]:
    header = request.headers.get("if-none-match") or ""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _path(request: func.HttpRequest) -> str:
    return _target(request).split("?", 1)[0]


def _target(request: func.HttpRequest) -> str:
    """Return the path and query string of the request's URL."""
    url = request.url
    start = url.find("/", url.find("//") + 2) if "//" in url else 0
    return url[start:] if start >= 0 else url


class _Unexpected(LoadbayError):
    status = 500
    default_title = "Internal error"
