"""Start and stop a real Azurite (the Azure Storage emulator) for tests, benches and `make run`."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from devhost.processes import node_tool, port_in_use, start, stop

ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development key; it is public and only valid against the emulator.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connection_string(blob_port: int, queue_port: int, table_port: int) -> str:
    """Build the connection string for an Azurite listening on the given ports."""
    base = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={base}:{blob_port}/{ACCOUNT_NAME};"
        f"QueueEndpoint={base}:{queue_port}/{ACCOUNT_NAME};"
        f"TableEndpoint={base}:{table_port}/{ACCOUNT_NAME};"
    )


@dataclass
class Azurite:
    """One Azurite process on free (or given) ports; in memory unless `location` is set."""

    location: Path | None = None
    blob_port: int = field(default_factory=free_port)
    queue_port: int = field(default_factory=free_port)
    table_port: int = field(default_factory=free_port)
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    def command(self) -> list[str]:
        args = [
            node_tool("azurite"),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
            "--skipApiVersionCheck", "--disableTelemetry", "--loose",
        ]  # fmt: skip
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        return args

    def start(self, timeout: float = 30.0) -> Azurite:
        """Start Azurite and wait until all three services accept connections."""
        self.process = start(self.command(), log_file=self.log_file)
        deadline = time.monotonic() + timeout
        for port in (self.blob_port, self.queue_port, self.table_port):
            while not port_in_use(port):
                if self.process.poll() is not None:
                    raise RuntimeError(f"Azurite exited with code {self.process.returncode}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"Azurite did not listen on 127.0.0.1:{port}")
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the Azurite process this object started."""
        if self.process is not None:
            stop(self.process, grace=10)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
