"""devhost: a local stand-in for the Azure Functions host (`func start`) for development and tests."""

from __future__ import annotations

from devhost.host import BurstResult, Host, SkippedFunction

__all__ = ["BurstResult", "Host", "SkippedFunction"]
