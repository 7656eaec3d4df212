"""The real Static Web Apps CLI emulator in front of the devhost (routes, auth emulation, /api proxy)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
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
    # The local blob endpoint the browser uploads to; the site's CSP allows only Azure's by default.
    blob_origin: str | None = None
    _config_dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    def config_location(self) -> Path:
        """Return the directory of the route config: the site's own, or a copy allowing `blob_origin`."""
        if self.blob_origin is None:
            return self.site
        if self._config_dir is None:
            self._config_dir = tempfile.TemporaryDirectory(prefix="loadbay-swa-")
            config = json.loads((self.site / "staticwebapp.config.json").read_text(encoding="utf-8"))
            headers = config["globalHeaders"]
            headers["Content-Security-Policy"] = with_connect_source(
                headers["Content-Security-Policy"], self.blob_origin
            )
            target = Path(self._config_dir.name) / "staticwebapp.config.json"
            target.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return Path(self._config_dir.name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # Never --api-location: it makes the CLI try to download Core Tools. Without
        # --swa-config-location the route rules are silently ignored.
        return [
            node_tool("swa"), "start", str(self.site),
            "--swa-config-location", str(self.config_location()),
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
        if self._config_dir is not None:
            self._config_dir.cleanup()
            self._config_dir = None

    def __enter__(self) -> SwaEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def with_connect_source(policy: str, origin: str) -> str:
    """Add `origin` to a Content-Security-Policy's connect-src (for the local Azurite blob endpoint)."""
    directives = [part.strip() for part in policy.split(";") if part.strip()]
    for index, directive in enumerate(directives):
        if directive.startswith("connect-src ") and origin not in directive.split():
            directives[index] = f"{directive} {origin}"
    return "; ".join(directives)
