"""Durable Functions for devhost: the extension's side of the protocol, with the task hub in Azure Storage."""

from __future__ import annotations

from devhost.durable.kind import DurableClientBinding, DurableTriggerKind

__all__ = ["DurableClientBinding", "DurableTriggerKind"]
