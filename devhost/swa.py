"""The real Static Web Apps CLI emulator in front of the devhost (routes, auth emulation, /api proxy)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from devhost.azurite import free_port
from devhost.processes import REPO_ROOT, node_tool, start, stop, wait_for_url


@dataclass
class SwaEmulator:
    """`swa start` serving static_site/ and proxying /api to a devhost already listening."""

    api_url: str
    port: int = 0
    site: Path = REPO_ROOT / "static_site"
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # Never --api-location: it makes the CLI try to download Core Tools. Without
        # --swa-config-location the route rules are silently ignored.
        return [
            node_tool("swa"), "start", str(self.site),
            "--swa-config-location", str(self.site),
            "--api-devserver-url", self.api_url,
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip

    def start(self, timeout: float = 90.0) -> SwaEmulator:
        """Start the emulator and wait until it serves the site."""
        self.process = start(self.command(), log_file=self.log_file, cwd=REPO_ROOT)
        try:
            wait_for_url(self.url + "/", timeout=timeout, process=self.process)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the emulator and the processes it spawned."""
        if self.process is not None:
            stop(self.process)

    def __enter__(self) -> SwaEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
