"""Sample orchestrations covering the Durable features devhost serves; tests drive them through the SDK."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from orchestrations.fanout import all_settled

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

HELLO = "hello"
DOUBLE = "double"
FLAKY = "flaky"
EXPLODE = "explode"
ECHO = "echo"
# Tests flip this between replays to make `nondeterministic` change what it schedules.
NONDETERMINISTIC_ACTIVITY = HELLO
# Attempts per key, with their times: the retry tests read them.
ATTEMPTS: dict[str, list[float]] = {}
_ATTEMPTS_LOCK = threading.Lock()
# How many `busy` activities ran at once, at most (the concurrency limit test reads it).
CONCURRENCY = {"now": 0, "max": 0}
# The same for replays of `slow_replay` (the orchestrator concurrency test reads it).
REPLAYS = {"now": 0, "max": 0}
SLOW_SECONDS = float(os.environ.get("SLOW_ACTIVITY_SECONDS", "0"))


class BackoffRetryOptions(df.RetryOptions):
    """RetryOptions with the extension's other fields (the Python SDK sends only the first two)."""

    def __init__(
        self,
        first_ms: int,
        max_attempts: int,
        backoff: float = 1.0,
        max_ms: int | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        super().__init__(first_ms, max_attempts)
        self.extra: dict[str, Any] = {"backoffCoefficient": backoff}
        if max_ms is not None:
            self.extra["maxRetryIntervalInMilliseconds"] = max_ms
        if timeout_ms is not None:
            self.extra["retryTimeoutInMilliseconds"] = timeout_ms

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), **self.extra}


def _json_response(value: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(value, default=str), status_code=status, mimetype="application/json")


@app.route(route="start/{name}/{instance_id?}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start an orchestration with the JSON body as input; answer the check-status response."""
    body = req.get_body()
    value = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["name"], req.route_params.get("instance_id"), value)
    return client.create_check_status_response(req, instance_id)


@app.route(route="run/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start an orchestration and wait (up to 20 s) for it, as wait_for_completion... does."""
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["name"], None, json.loads(body) if body else None)
    timeout = int(req.params.get("timeout_ms", "20000"))
    return await client.wait_for_completion_or_create_check_status_response(req, instance_id, timeout, 100)


@app.route(route="client/{operation}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def client_operation(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Call one DurableOrchestrationClient method with the JSON body's arguments; answer its result."""
    args = req.get_json() or {}
    operation = req.route_params["operation"]
    try:
        result = await _call(client, operation, args)
    except Exception as error:  # noqa: BLE001 - reported to the test
        return _json_response({"error": str(error)}, status=409)
    return _json_response(result)


def _when(args: dict[str, Any], key: str) -> datetime | None:
    return datetime.fromisoformat(args[key]) if args.get(key) else None


def _statuses(args: dict[str, Any]) -> list[df.OrchestrationRuntimeStatus] | None:
    return [df.OrchestrationRuntimeStatus(status) for status in args.get("statuses", [])] or None


async def _status(client: df.DurableOrchestrationClient, args: dict[str, Any]) -> Any:
    status = await client.get_status(
        args["instance_id"], args.get("show_history", False), args.get("show_history_output", False)
    )
    if not status:
        return {"found": False}
    return status.to_json() | {"history": status.history, "found": True}


async def _status_by(client: df.DurableOrchestrationClient, args: dict[str, Any]) -> Any:
    found = await client.get_status_by(
        _when(args, "created_from"), _when(args, "created_to"), _statuses(args)
    )
    return [status.to_json() for status in found]


async def _purge_by(client: df.DurableOrchestrationClient, args: dict[str, Any]) -> Any:
    result = await client.purge_instance_history_by(
        _when(args, "created_from"), _when(args, "created_to"), _statuses(args)
    )
    return result.instances_deleted


OPERATIONS: dict[str, Callable[[df.DurableOrchestrationClient, dict[str, Any]], Awaitable[Any]]] = {
    "start": lambda client, args: client.start_new(args["name"], args.get("instance_id"), args.get("input")),
    "status": _status,
    "status_all": lambda client, args: _all_statuses(client),
    "status_by": _status_by,
    "raise_event": lambda client, args: client.raise_event(
        args["instance_id"], args["event"], args.get("data")
    ),
    "terminate": lambda client, args: client.terminate(args["instance_id"], args.get("reason", "test")),
    "suspend": lambda client, args: client.suspend(args["instance_id"], args.get("reason", "test")),
    "resume": lambda client, args: client.resume(args["instance_id"], args.get("reason", "test")),
    "purge": lambda client, args: _deleted(client.purge_instance_history(args["instance_id"])),
    "purge_by": _purge_by,
    "rewind": lambda client, args: client.rewind(args["instance_id"], "test"),
    "restart": lambda client, args: client.restart(args["instance_id"], args.get("new_id", True)),
    "signal_entity": lambda client, args: client.signal_entity(df.EntityId("counter", "one"), "add", 1),
}


async def _all_statuses(client: df.DurableOrchestrationClient) -> Any:
    return [status.to_json() for status in await client.get_status_all()]


async def _deleted(purge: Awaitable[Any]) -> int:
    return int((await purge).instances_deleted)


async def _call(client: df.DurableOrchestrationClient, operation: str, args: dict[str, Any]) -> Any:
    return await OPERATIONS[operation](client, args)


# Activities.


@app.activity_trigger(input_name="name")
def hello(name: str) -> str:
    """Greet."""
    return f"Hello {name}!"


@app.activity_trigger(input_name="number")
def double(number: int) -> int:
    """Double a number."""
    return number * 2


@app.activity_trigger(input_name="payload")
def echo(payload: Any) -> Any:
    """Return the input (large payload tests)."""
    return payload


@app.activity_trigger(input_name="request")
def flaky(request: dict[str, Any]) -> int:
    """Fail the first `fail_times` attempts for `key`; then answer the attempt number."""
    with _ATTEMPTS_LOCK:
        attempts = ATTEMPTS.setdefault(request["key"], [])
        attempts.append(time.monotonic())
        attempt = len(attempts)
    if attempt <= request["fail_times"]:
        raise RuntimeError(f"attempt {attempt} failed")
    return attempt


@app.activity_trigger(input_name="number")
def tagged(number: int) -> list[int]:
    """Double a number slowly; say which process did it."""
    time.sleep(SLOW_SECONDS)
    return [number * 2, os.getpid()]


@app.activity_trigger(input_name="seconds")
def busy(seconds: float) -> int:
    """Sleep, counting how many of these run at the same time."""
    with _ATTEMPTS_LOCK:
        CONCURRENCY["now"] += 1
        CONCURRENCY["max"] = max(CONCURRENCY["max"], CONCURRENCY["now"])
    time.sleep(seconds)
    with _ATTEMPTS_LOCK:
        CONCURRENCY["now"] -= 1
    return 1


@app.activity_trigger(input_name="message")
def explode(message: str) -> None:
    """Always fail."""
    raise ValueError(message)


# Orchestrators.


@app.orchestration_trigger(context_name="context")
def hello_sequence(context: df.DurableOrchestrationContext):
    """Three activities in a row."""
    results = []
    for city in ("Tokyo", "Seattle", "London"):
        results.append((yield context.call_activity(HELLO, city)))
    return results


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    """Double 0..n-1 at once and add up."""
    count = context.get_input()
    results = yield context.task_all([context.call_activity(DOUBLE, number) for number in range(count)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def tagged_fan_out(context: df.DurableOrchestrationContext):
    """Fan out to the slow `tagged` activity; report the sum and which processes ran activities."""
    results = yield context.task_all(
        [context.call_activity("tagged", number) for number in range(context.get_input())]
    )
    return {
        "sum": sum(result[0] for result in results),
        "count": len(results),
        "pids": sorted({result[1] for result in results}),
    }


@app.orchestration_trigger(context_name="context")
def busy_fan_out(context: df.DurableOrchestrationContext):
    """Fan out `count` activities that each sleep `seconds`."""
    spec = context.get_input()
    results = yield context.task_all(
        [context.call_activity("busy", spec["seconds"]) for _ in range(spec["count"])]
    )
    return sum(results)


@app.orchestration_trigger(context_name="context")
def settled_fan_out(context: df.DurableOrchestrationContext):
    """One activity that fails at once and two slow ones, through Loadbay's all_settled (which echoes
    "stand down" when the first fails)."""
    tasks = [context.call_activity(EXPLODE, "first"), *(context.call_activity("busy", 0.5) for _ in range(2))]
    try:
        yield from all_settled(context, tasks, stop=lambda: context.call_activity(ECHO, "stand down"))
    except Exception as error:  # noqa: BLE001 - the SDK raises a plain Exception for an activity's failure
        return {"error": str(error), "others": [task.result for task in tasks[1:]]}
    return {"error": None}


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    """Double a value `n` times, one activity after another."""
    value = 0
    for _ in range(context.get_input()):
        value = yield context.call_activity(DOUBLE, value + 1)
    return value


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext):
    """Call the flaky activity with retries (back-off from the input)."""
    spec = context.get_input()
    options = BackoffRetryOptions(
        spec["first_ms"],
        spec["max_attempts"],
        spec.get("backoff", 1.0),
        spec.get("max_ms"),
        spec.get("timeout_ms"),
    )
    try:
        attempt = yield context.call_activity_with_retry(FLAKY, options, spec)
    except Exception as error:  # noqa: BLE001 - the test reads the message
        return {"failed": str(error).splitlines()[0]}
    return {"attempt": attempt}


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext):
    """A sub-orchestration: greet its input; fail when asked."""
    value = context.get_input()
    if value == "fail":
        raise ValueError("child was asked to fail")
    greeting = yield context.call_activity(HELLO, value)
    return {"greeting": greeting, "parent": context.parent_instance_id, "me": context.instance_id}


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    """Sub-orchestrations: explicit id, generated id, with retry, and a failing one."""
    spec = context.get_input()
    first = yield context.call_sub_orchestrator("child", "Ada", spec["child_id"])
    second = yield context.call_sub_orchestrator("child", "Grace")
    options = df.RetryOptions(50, 2)
    retried = yield context.call_sub_orchestrator_with_retry("child", options, "Linus")
    try:
        yield context.call_sub_orchestrator("child", "fail")
        failure = None
    except Exception as error:  # noqa: BLE001 - reported in the output
        failure = str(error).splitlines()[0]
    return {"first": first, "second": second, "retried": retried, "failure": failure}


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    """Wait for an `approve` event or a timer, whichever comes first; report progress in custom status."""
    seconds = context.get_input()
    context.set_custom_status({"stage": "waiting"})
    timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=seconds))
    event = context.wait_for_external_event("approve")
    winner = yield context.task_any([event, timer])
    if winner == event:
        timer.cancel()
        context.set_custom_status({"stage": "approved"})
        return {"approved": event.result}
    context.set_custom_status({"stage": "timed out"})
    return {"approved": None}


@app.orchestration_trigger(context_name="context")
def waiter(context: df.DurableOrchestrationContext):
    """Wait for two events in order; custom status says which one is awaited."""
    context.set_custom_status("waiting for first")
    first = yield context.wait_for_external_event("first")
    context.set_custom_status("waiting for second")
    second = yield context.wait_for_external_event("second")
    context.set_custom_status("done")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext):
    """A durable timer of `input` seconds, then an activity."""
    seconds = context.get_input()
    started = context.current_utc_datetime
    yield context.create_timer(started + timedelta(seconds=seconds))
    greeting = yield context.call_activity(HELLO, "timer")
    return {"greeting": greeting, "waited": (context.current_utc_datetime - started).total_seconds()}


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    """continue_as_new until the count reaches `target`, collecting external events as it goes."""
    state = context.get_input()
    if state["count"] >= state["target"]:
        return state
    if state.get("wait_event"):
        state["events"].append((yield context.wait_for_external_event("tick")))
    else:
        yield context.call_activity(DOUBLE, state["count"])
    state["count"] += 1
    context.continue_as_new(state)
    return None


@app.orchestration_trigger(context_name="context")
def failing(context: df.DurableOrchestrationContext):
    """Fail after one activity with an exception of its own."""
    yield context.call_activity(HELLO, "doomed")
    raise ValueError("orchestrator exploded on purpose")


@app.orchestration_trigger(context_name="context")
def unhandled_activity_failure(context: df.DurableOrchestrationContext):
    """Let an activity's failure escape."""
    yield context.call_activity(EXPLODE, "activity exploded on purpose")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext):
    """Schedule an activity named by a module variable, wait for an event, then do it again."""
    yield context.call_activity(NONDETERMINISTIC_ACTIVITY, "first")
    yield context.wait_for_external_event("continue")
    return (yield context.call_activity(HELLO, "second"))


@app.orchestration_trigger(context_name="context")
def replay_facts(context: df.DurableOrchestrationContext):
    """Report is_replaying and current_utc_datetime at each point, and a replay-safe uuid."""
    observed = [{"replaying": context.is_replaying, "now": context.current_utc_datetime.isoformat()}]
    for city in ("A", "B"):
        yield context.call_activity(HELLO, city)
        observed.append({"replaying": context.is_replaying, "now": context.current_utc_datetime.isoformat()})
    return {"observed": observed, "uuid": str(context.new_uuid()), "instance": context.instance_id}


@app.orchestration_trigger(context_name="context")
def large(context: df.DurableOrchestrationContext):
    """Pass large values through an activity, into custom status and out as the output."""
    payload = context.get_input()
    echoed = yield context.call_activity(ECHO, payload + payload)
    context.set_custom_status(payload[:40_000])
    return echoed + "!"


@app.orchestration_trigger(context_name="context")
def many_timers(context: df.DurableOrchestrationContext):
    """Wait on `n` durable timers at once (more rows than one batch holds)."""
    now = context.current_utc_datetime
    count = context.get_input()
    yield context.task_all(
        [context.create_timer(now + timedelta(milliseconds=200 + i)) for i in range(count)]
    )
    return count


@app.orchestration_trigger(context_name="context")
def sub_fan_out(context: df.DurableOrchestrationContext):
    """Fan out to `n` sub-orchestrations."""
    names = [f"n{number}" for number in range(context.get_input())]
    results = yield context.task_all([context.call_sub_orchestrator("child", name) for name in names])
    return [result["greeting"] for result in results]


@app.orchestration_trigger(context_name="context")
def collect(context: df.DurableOrchestrationContext):
    """Take `n` `item` events, one after another."""
    items = []
    for _ in range(context.get_input()):
        items.append((yield context.wait_for_external_event("item")))
    return items


@app.orchestration_trigger(context_name="context")
def uses_entity(context: df.DurableOrchestrationContext):
    """Call an entity (not supported by devhost)."""
    return (yield context.call_entity(df.EntityId("counter", "one"), "get"))


@app.entity_trigger(context_name="context")
def counter_entity(context: df.DurableEntityContext) -> None:
    """An entity (devhost lists it as not loaded)."""
    context.set_result(context.get_state(lambda: 0))


@app.orchestration_trigger(context_name="context")
def rounds(context: df.DurableOrchestrationContext):
    """Fan out to `tagged` `width` times in `rounds` rounds, one round after another; sum and report pids."""
    spec = context.get_input()
    total = 0
    pids: set[int] = set()
    for round_number in range(spec["rounds"]):
        numbers = [round_number * 1000 + n for n in range(spec["width"])]
        results = yield context.task_all([context.call_activity("tagged", number) for number in numbers])
        total += sum(result[0] for result in results)
        pids.update(result[1] for result in results)
    return {"total": total, "pids": sorted(pids)}


@app.orchestration_trigger(context_name="context")
def bad_child_id(context: df.DurableOrchestrationContext):
    """Call a sub-orchestration with an instance id the task hub cannot hold; report the failure."""
    try:
        yield context.call_sub_orchestrator("child", "Ada", context.get_input())
    except Exception as error:  # noqa: BLE001 - reported in the output
        return {"failed": str(error).splitlines()[0]}
    return {"failed": None}


@app.orchestration_trigger(context_name="context")
def slow_replay(context: df.DurableOrchestrationContext):
    """Take a while in every replay (counting replays at once), around one activity."""
    with _ATTEMPTS_LOCK:
        REPLAYS["now"] += 1
        REPLAYS["max"] = max(REPLAYS["max"], REPLAYS["now"])
    time.sleep(0.2)
    with _ATTEMPTS_LOCK:
        REPLAYS["now"] -= 1
    return (yield context.call_activity(DOUBLE, context.get_input()))
