"""The errors business code raises; `http_api` maps each to an RFC 9457 problem answer in one place."""

from __future__ import annotations

from typing import Any, ClassVar


class LoadbayError(Exception):
    """Base of every expected failure; carries what a person needs to fix the request."""

    status: ClassVar[int] = 500
    default_title: ClassVar[str] = "Something went wrong"

    def __init__(
        self, detail: str, *, title: str | None = None, problems: list[dict[str, Any]] | None = None
    ):
        super().__init__(detail)
        self.detail = detail
        self.title = title or self.default_title
        self.problems = problems or []


class BadRequest(LoadbayError):
    status = 400
    default_title = "The request is malformed"


class Unauthorized(LoadbayError):
    status = 401
    default_title = "Sign-in required"


class Forbidden(LoadbayError):
    status = 403
    default_title = "Not allowed"


class NotFound(LoadbayError):
    status = 404
    default_title = "Not found"


class Conflict(LoadbayError):
    status = 409
    default_title = "Conflict with the current state"


class LimitExceeded(LoadbayError):
    status = 413
    default_title = "A limit was exceeded"


class UnsupportedMediaType(LoadbayError):
    status = 415
    default_title = "Unsupported media type"


class Invalid(LoadbayError):
    status = 422
    default_title = "The request is not valid"


class RetryLater(LoadbayError):
    """A dependency is not ready; the caller (or the queue) should try again."""

    status = 503
    default_title = "Try again later"


class TooManyRequests(LoadbayError):
    """The caller sent more requests than its rate limit allows; ``retry_after`` says when to try again."""

    status = 429
    default_title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
