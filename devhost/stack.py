"""`make run`: Azurite (on disk) + devhost + the SWA emulator, until Ctrl-C stops all three.

Run as `python -m devhost.stack`. Data lives under .localdata/ so it survives restarts.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient, CorsRule

from devhost.azurite import Azurite
from devhost.processes import REPO_ROOT, port_in_use, start, stop, wait_for_url
from devhost.swa import SwaEmulator

log = logging.getLogger("devhost.stack")
DATA_DIR = REPO_ROOT / ".localdata"


def allow_browser_uploads(connection_string: str, site_port: int) -> None:
    """Let the web UI PUT blocks straight to Azurite's blob endpoint (CORS), as in Azure."""
    origins = [f"http://127.0.0.1:{site_port}", f"http://localhost:{site_port}"]
    rule = CorsRule(
        origins,
        ["GET", "HEAD", "PUT", "OPTIONS"],
        allowed_headers=["*"],
        exposed_headers=["*"],
        max_age_in_seconds=3600,
    )
    BlobServiceClient.from_connection_string(connection_string).set_service_properties(cors=[rule])


def ensure_local_settings(app_dir: Path) -> None:
    """Create local.settings.json from the sample the first time."""
    settings = app_dir / "local.settings.json"
    if not settings.exists():
        shutil.copyfile(app_dir / "local.settings.sample.json", settings)
        log.info("Created %s from local.settings.sample.json", settings)


def main(argv: list[str] | None = None) -> int:
    """Start the three parts, wait for /api/health through SWA, then wait for Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m devhost.stack", description=__doc__)
    parser.add_argument("--swa-port", type=int, default=4280)
    parser.add_argument("--api-port", type=int, default=7071)
    parser.add_argument(
        "--storage-ports", default="10000,10001,10002", help="Azurite's blob,queue,table ports"
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where Azurite keeps its data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every request at INFO
    blob_port, queue_port, table_port = (int(port) for port in args.storage_ports.split(","))

    busy = [
        port
        for port in (blob_port, queue_port, table_port, args.api_port, args.swa_port)
        if port_in_use(port)
    ]
    if busy:
        log.error("Ports already in use: %s. Stop whatever holds them (an earlier `make run`?).", busy)
        return 1
    ensure_local_settings(REPO_ROOT)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Ignore further signals so a second Ctrl-C cannot cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    azurite = Azurite(
        location=args.data_dir / "azurite",
        blob_port=blob_port,
        queue_port=queue_port,
        table_port=table_port,
        log_file=args.data_dir / "azurite.log",
    )
    children: list[subprocess.Popen[bytes]] = []
    swa: SwaEmulator | None = None
    try:
        azurite.start()
        log.info("Azurite listening on 127.0.0.1:%s (data in %s)", args.storage_ports, azurite.location)
        allow_browser_uploads(azurite.connection_string, args.swa_port)
        env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string}
        command = [sys.executable, "-m", "devhost", "--app-dir", str(REPO_ROOT), "--port", str(args.api_port)]
        devhost = start(command, env=env, cwd=REPO_ROOT, inherit_output=True)
        children.append(devhost)
        api_url = f"http://127.0.0.1:{args.api_port}"
        wait_for_url(api_url + "/api/health", timeout=60, process=devhost)
        swa = SwaEmulator(
            api_url=api_url,
            port=args.swa_port,
            log_file=args.data_dir / "swa.log",
            blob_origin=f"http://127.0.0.1:{blob_port}",
        ).start()
        wait_for_url(swa.url + "/api/health", timeout=60, process=swa.process)
        log.info("Loadbay is running at %s (Ctrl-C stops it)", swa.url)
        while True:
            time.sleep(1.0)
            for child in [azurite.process, devhost, swa.process]:
                if child is not None and child.poll() is not None:
                    log.error("A part of the stack exited (code %s); stopping the rest", child.returncode)
                    return 1
    except KeyboardInterrupt:
        return 0
    except (TimeoutError, RuntimeError, FileNotFoundError, AzureError) as error:
        log.error("Could not start Loadbay: %s", error)
        return 1
    finally:
        log.info("Stopping...")
        if swa is not None:
            swa.stop()
        for child in children:
            stop(child)
        azurite.stop()
        log.info("Stopped Azurite, devhost and the SWA emulator")


if __name__ == "__main__":
    raise SystemExit(main())
