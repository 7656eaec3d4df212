"""Sample app for devhost retry tests: fails the first attempt, succeeds on the retry."""

from __future__ import annotations

import os
import time

import azure.functions as func

app = func.FunctionApp()

ATTEMPTS: list[tuple[int, float]] = []


@app.queue_trigger(arg_name="msg", queue_name="%RETRY_QUEUE%", connection="AzureWebJobsStorage")
def flaky(msg: func.QueueMessage) -> None:
    ATTEMPTS.append((msg.dequeue_count or 0, time.monotonic()))
    if (msg.dequeue_count or 0) < 2:
        raise TimeoutError("first attempt fails")


SLEEPY: list[int] = []


@app.queue_trigger(arg_name="msg", queue_name="%SLEEPY_QUEUE%", connection="AzureWebJobsStorage")
def sleepy(msg: func.QueueMessage) -> None:
    # Outlives a short lease: only renewal keeps the message from being delivered a second time meanwhile.
    SLEEPY.append(msg.dequeue_count or 0)
    time.sleep(float(os.environ.get("SLEEPY_SECONDS", "0")))
