"""Sample app for devhost timer tests: runOnStartup, a monitored hourly timer, a yearly one."""

from __future__ import annotations

import threading
import time

import azure.functions as func

app = func.FunctionApp()

FIRED: list[tuple[str, bool]] = []


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
def on_startup(timer: func.TimerRequest) -> None:
    FIRED.append(("on_startup", timer.past_due))


@app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
def hourly(timer: func.TimerRequest) -> None:
    FIRED.append(("hourly", timer.past_due))


@app.timer_trigger(schedule="%YEARLY_SCHEDULE%", arg_name="timer")
def yearly(timer: func.TimerRequest) -> None:
    FIRED.append(("yearly", timer.past_due))


TICKS = {"now": 0, "max": 0, "total": 0}
_lock = threading.Lock()


@app.timer_trigger(schedule="%FAST_SCHEDULE%", arg_name="timer")
def fast(timer: func.TimerRequest) -> None:
    # Slower than its schedule: invocations must queue up behind each other, never overlap.
    with _lock:
        TICKS["now"] += 1
        TICKS["total"] += 1
        TICKS["max"] = max(TICKS["max"], TICKS["now"])
    time.sleep(1.2)
    with _lock:
        TICKS["now"] -= 1
