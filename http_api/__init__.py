"""HTTP front end: validates, authorizes, reads and writes tables, queues commands, answers at once."""

from http_api import datasets, exports, health, imports, me, openapi, ops, uploads  # noqa: F401  (importing registers the routes)
from http_api.blueprint import bp

__all__ = ["bp"]
