"""Durable orchestrations (the import workflow) and their activities."""

from orchestrations import imports  # noqa: F401  (importing registers the functions)
from orchestrations.blueprint import bp

__all__ = ["bp"]
