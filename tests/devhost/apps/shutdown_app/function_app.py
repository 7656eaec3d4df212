"""Sample app for devhost subprocess tests: a health route and a slow queue handler."""

from __future__ import annotations

import logging
import os
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="health", methods=["GET"])
def http_health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@app.queue_trigger(arg_name="msg", queue_name="%SLOW_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="done", queue_name="%DONE_QUEUE%", connection="AzureWebJobsStorage")
def slow_worker(msg: func.QueueMessage, done: func.Out[str]) -> None:
    body = msg.get_body().decode("utf-8")
    logging.info("slow_worker started %s", body)
    time.sleep(float(os.environ.get("SLOW_SECONDS", "2")))
    done.set(body)
