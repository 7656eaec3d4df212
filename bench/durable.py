"""Durable throughput through the devhost on Azurite, next to the Azure Storage provider's figures.

Run: .venv/bin/python bench/durable.py [--fan-out 1000] [--sequence 100]. Prints activities/s for a
fan-out/fan-in and for sequential activities, each as a ratio to the published per-instance
throughput of the Durable Functions Azure Storage provider (fan-out ~100/s, sequential ~5/s).
Targets: fan-out >= 1.0x, sequential >= 4x.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devhost.azurite import Azurite, free_port
from devhost.processes import REPO_ROOT, start, stop, wait_for_url

APP_DIR = REPO_ROOT / "bench" / "apps" / "durable"
PUBLISHED = {"fan_out": 100.0, "sequence": 5.0}  # activities/s, Azure Storage provider, one instance
TARGETS = {"fan_out": 1.0, "sequence": 4.0}


def run_orchestration(base_url: str, name: str, count: int, expected: int) -> float:
    """Start `name` with `count`, wait for it to complete, and return the elapsed seconds."""
    started = time.perf_counter()
    answer = requests.post(f"{base_url}/api/start/{name}", json=count, timeout=60)
    answer.raise_for_status()
    status_url = answer.json()["statusQueryGetUri"]
    while True:
        status = requests.get(status_url, timeout=60).json()
        if status["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    if status["runtimeStatus"] != "Completed" or status["output"] != expected:
        raise SystemExit(f"{name} ended {status['runtimeStatus']} with {status.get('output')!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fan-out", type=int, default=1000)
    parser.add_argument("--sequence", type=int, default=100)
    args = parser.parse_args()
    log_file = REPO_ROOT / "test-output" / "bench-durable-devhost.log"
    with Azurite() as azurite:
        port = free_port()
        env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "devhost", "--app-dir", str(APP_DIR), "--port", str(port)]
        devhost = start(command, env=env, cwd=REPO_ROOT, log_file=log_file)
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_for_url(base_url + "/admin/host/status", timeout=60, process=devhost)
            run_orchestration(base_url, "fan_out", 10, sum(2 * n for n in range(10)))  # warm-up
            fan_out = run_orchestration(
                base_url, "fan_out", args.fan_out, sum(2 * n for n in range(args.fan_out))
            )
            expected = 0
            for _ in range(args.sequence):
                expected = (expected + 1) * 2
            sequence = run_orchestration(base_url, "sequence", args.sequence, expected)
        finally:
            stop(devhost)
    rates = {"fan_out": args.fan_out / fan_out, "sequence": args.sequence / sequence}
    print("Durable throughput through the devhost on Azurite (one orchestration instance each)")
    labels = {"fan_out": f"fan-out/fan-in of {args.fan_out}", "sequence": f"{args.sequence} sequential"}
    for kind, rate in rates.items():
        ratio = rate / PUBLISHED[kind]
        verdict = "meets" if ratio >= TARGETS[kind] else "MISSES"
        print(
            f"{labels[kind]:<26}: {rate:8.1f} activities/s vs Storage provider ~{PUBLISHED[kind]:.0f}/s"
            f"  = {ratio:5.2f}x  ({verdict} the {TARGETS[kind]:.1f}x target)"
        )


if __name__ == "__main__":
    main()
