"""Sample app for devhost queue tests: metadata, concurrency, poison, output bindings."""

from __future__ import annotations

import asyncio
import threading

import azure.functions as func

app = func.FunctionApp()

RECORDS: list[dict[str, object]] = []
FAILURES: list[int] = []
_lock = threading.Lock()
CONCURRENCY = {"now": 0, "max": 0, "total": 0}


@app.queue_trigger(arg_name="msg", queue_name="%RECORD_QUEUE%", connection="AzureWebJobsStorage")
def record(msg: func.QueueMessage) -> None:
    with _lock:
        RECORDS.append(
            {
                "id": msg.id,
                "body": msg.get_body(),
                "dequeue_count": msg.dequeue_count,
                "insertion_time": msg.insertion_time,
                "expiration_time": msg.expiration_time,
                "pop_receipt": msg.pop_receipt,
            }
        )


TEXTS: list[str] = []


@app.queue_trigger(arg_name="text", queue_name="%TEXT_QUEUE%", connection="AzureWebJobsStorage")
def record_text(text: str) -> None:
    TEXTS.append(text)


@app.queue_trigger(arg_name="msg", queue_name="%FAIL_QUEUE%", connection="AzureWebJobsStorage")
def always_fail(msg: func.QueueMessage) -> None:
    with _lock:
        FAILURES.append(msg.dequeue_count or 0)
    raise ValueError(f"cannot handle {msg.get_body()!r}")


@app.queue_trigger(arg_name="msg", queue_name="%SLOW_QUEUE%", connection="AzureWebJobsStorage")
async def slow(msg: func.QueueMessage) -> None:
    CONCURRENCY["now"] += 1
    CONCURRENCY["total"] += 1
    CONCURRENCY["max"] = max(CONCURRENCY["max"], CONCURRENCY["now"])
    await asyncio.sleep(0.3)
    CONCURRENCY["now"] -= 1


@app.queue_trigger(arg_name="msg", queue_name="%FORWARD_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="%RECORD_QUEUE%", connection="AzureWebJobsStorage")
def forward(msg: func.QueueMessage, out: func.Out[list[str]]) -> None:
    text = msg.get_body().decode("utf-8")
    out.set([f"{text} (forwarded 1)", f"{text} (forwarded 2)"])
