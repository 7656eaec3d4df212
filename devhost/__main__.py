"""Command line: `python -m devhost [--app-dir DIR] [--host H] [--port N] [--burst] [--log-level L]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from azure.core.exceptions import AzureError

from devhost.config import ConfigError
from devhost.host import DEFAULT_GRACE_SECONDS, DEFAULT_HOST, Host

logger = logging.getLogger("devhost")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m devhost", description="Run an Azure Functions Python app locally."
    )
    parser.add_argument(
        "--app-dir", type=Path, default=Path.cwd(), help="app folder (default: current directory)"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="HTTP listen address (default: 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="HTTP port (default: local.settings.json Host.LocalHttpPort, else 7071; 0: any free)",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="run due/runOnStartup timers, drain all trigger queues, then exit (no HTTP server)",
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="seconds in-flight invocations get to finish on SIGINT/SIGTERM (default: 10)",
    )
    parser.add_argument(
        "--burst-timeout", type=float, default=None, help="give up a burst after this many seconds"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


async def serve(host: Host, args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    start = host.start(host=args.host, port=args.port, grace_seconds=args.grace_period)
    starting = asyncio.create_task(start)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        # A signal during start-up (e.g. storage unreachable and retrying): abandon the start cleanly.
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        logger.info("Stopped before start-up finished")
        return
    starting.result()
    print(f"Listening on {host.base_url}", flush=True)
    await stopped
    logger.info("Stopping (grace period %.0f s)", args.grace_period)
    await host.stop()


async def burst(host: Host, args: argparse.Namespace) -> None:
    """Drain once; SIGINT/SIGTERM stop early and still gracefully."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        result = await host.run_burst(args.burst_timeout, grace_seconds=args.grace_period)
    except asyncio.CancelledError:
        logger.info("Burst interrupted")
        return
    logger.info("Burst finished: %d invocations, %d failed", result.invocations, result.failures)


def main(argv: Sequence[str] | None = None) -> int:
    """Run devhost; the exit code is 0 after a normal or signalled stop."""
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Azure's HTTP logging policy logs every storage request at INFO: too noisy next to invocation lines.
    logging.getLogger("azure").setLevel(max(logging.WARNING, logging.getLogger().level))
    app_dir = args.app_dir.resolve()
    if not app_dir.is_dir():
        logger.error("--app-dir %s is not a folder", app_dir)
        return 2
    # The worker runs with the app folder as its working directory, so relative paths behave the same.
    os.chdir(app_dir)
    try:
        host = Host.load(app_dir)
    except ConfigError as error:
        logger.error("%s", error)
        return 2
    with host:
        try:
            asyncio.run(burst(host, args) if args.burst else serve(host, args))
        except ConfigError as error:
            logger.error("%s", error)
            return 2
        except AzureError as error:
            logger.error("Storage is not reachable (is Azurite running?): %s", error)
            return 1
        except TimeoutError:
            logger.error("Burst did not finish within %s s", args.burst_timeout)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
