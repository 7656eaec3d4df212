"""A burst run starts orchestrations from a runOnStartup timer and runs them until nothing is left to do."""

from __future__ import annotations

import os
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp()
PREFIX = os.environ.get("INSTANCE_PREFIX", "burst")
STARTS = {"sequence": 3, "short_sleep": 1, "waiter": None, "long_sleep": 3600}


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True, use_monitor=False)
@app.durable_client_input(client_name="client")
async def kick_off(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Start one instance of each orchestration, with ids the test knows."""
    for name, value in STARTS.items():
        orchestrator = "sleeper" if name.endswith("sleep") else name
        await client.start_new(orchestrator, f"{PREFIX}-{name}", value)


@app.activity_trigger(input_name="number")
def add_one(number: int) -> int:
    """Add one."""
    return number + 1


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    """Add one `n` times."""
    value = 0
    for _ in range(context.get_input()):
        value = yield context.call_activity("add_one", value)
    return value


@app.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext):
    """Wait on a durable timer of `input` seconds."""
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=context.get_input()))
    return "woke"


@app.orchestration_trigger(context_name="context")
def waiter(context: df.DurableOrchestrationContext):
    """Wait for an event nobody raises."""
    return (yield context.wait_for_external_event("never"))
