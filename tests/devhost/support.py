"""Helpers shared by the devhost tests: sample app folder and queue access on the session's Azurite."""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueMessage

APPS = Path(__file__).resolve().parent / "apps"


@dataclass
class Queues:
    """Direct access to the session Azurite's queues, the way a producer would use them."""

    connection_string: str
    clients: dict[str, QueueClient] = field(default_factory=dict)

    def client(self, name: str) -> QueueClient:
        """Return a client for `name`, creating the queue if needed."""
        if name not in self.clients:
            client = QueueClient.from_connection_string(self.connection_string, name)
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            self.clients[name] = client
        return self.clients[name]

    def send(self, name: str, body: bytes) -> QueueMessage:
        """Send `body` base64-encoded, as the Functions queue trigger expects by default."""
        return self.client(name).send_message(base64.b64encode(body).decode("ascii"))

    def send_raw(self, name: str, text: str) -> QueueMessage:
        """Send text as is (no encoding)."""
        return self.client(name).send_message(text)

    def peek(self, name: str) -> list[str]:
        """Return the raw text of the visible messages."""
        return [str(message.content) for message in self.client(name).peek_messages(max_messages=32)]

    def count(self, name: str) -> int:
        """Count messages, visible or not."""
        return int(self.client(name).get_queue_properties().approximate_message_count or 0)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
