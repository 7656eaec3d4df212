"""NCRONTAB: parsing and next occurrence (UTC), including names, steps, lists and ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devhost.config import ConfigError
from devhost.ncrontab import CronSchedule, IntervalSchedule, parse_schedule

START = datetime(2024, 1, 15, 10, 20, 30, tzinfo=UTC)  # a Monday


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * * *", START, at(2024, 1, 15, 10, 20, 31)),
        ("*/15 * * * * *", START, at(2024, 1, 15, 10, 20, 45)),
        ("0 * * * * *", START, at(2024, 1, 15, 10, 21, 0)),
        ("0 */5 * * * *", START, at(2024, 1, 15, 10, 25, 0)),
        ("0 0 * * * *", START, at(2024, 1, 15, 11, 0, 0)),
        ("0 30 9 * * *", START, at(2024, 1, 16, 9, 30, 0)),
        ("0 30 9 * * MON-FRI", at(2024, 1, 19, 12, 0, 0), at(2024, 1, 22, 9, 30, 0)),
        ("0 0 12 * * SAT,sun", START, at(2024, 1, 20, 12, 0, 0)),
        ("0 0 0 1 * *", START, at(2024, 2, 1, 0, 0, 0)),
        ("0 0 0 29 FEB *", START, at(2024, 2, 29, 0, 0, 0)),
        ("0 0 0 29 2 *", at(2024, 3, 1, 0, 0, 0), at(2028, 2, 29, 0, 0, 0)),
        ("0 0 0 1 JAN *", START, at(2025, 1, 1, 0, 0, 0)),
        ("0 0 9-17/4 * * *", START, at(2024, 1, 15, 13, 0, 0)),
        ("5,10,50 * * * * *", START, at(2024, 1, 15, 10, 20, 50)),
        ("0 0 0 13 * 5", START, at(2024, 9, 13, 0, 0, 0)),  # Friday the 13th: day AND weekday, as NCrontab
        ("10/20 * * * * *", START, at(2024, 1, 15, 10, 20, 50)),
        ("0 0 0 * * 0", START, at(2024, 1, 21, 0, 0, 0)),
        ("0 59 23 31 12 *", START, at(2024, 12, 31, 23, 59, 0)),
        ("30 9 * * *", START, at(2024, 1, 16, 9, 30, 0)),  # 5 fields: seconds are 0
    ],
)
def test_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert CronSchedule.parse(expression).next_after(after) == expected


def test_next_occurrence_is_strictly_after_and_naive_means_utc() -> None:
    schedule = CronSchedule.parse("0 0 * * * *")
    assert schedule.next_after(at(2024, 1, 1, 5, 0, 0)) == at(2024, 1, 1, 6, 0, 0)
    assert schedule.next_after(datetime(2024, 1, 1, 5, 30)) == at(2024, 1, 1, 6, 0, 0)


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *  * *",
        "60 * * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "* * * * 13 *",
        "* * * * * 7",
        "*/0 * * * * *",
        "5-1 * * * * *",
        "* * * * * FUNDAY",
        "0 0 0 30 2 *",
        "a b c d e f",
        "1,,2 * * * * *",
    ],
)
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(ConfigError):
        CronSchedule.parse(expression).next_after(START)


def test_timespan_schedules() -> None:
    schedule = parse_schedule("00:05:00")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_after(START) == START + timedelta(minutes=5)


@settings(max_examples=60, deadline=None)
@given(
    second=st.sampled_from(["*", "0", "*/7", "10-20", "3,33"]),
    minute=st.sampled_from(["*", "0", "*/13", "58"]),
    offset=st.integers(min_value=0, max_value=86400 * 3),
)
def test_next_is_the_first_match(second: str, minute: str, offset: int) -> None:
    schedule = CronSchedule.parse(f"{second} {minute} * * * *")
    after = START + timedelta(seconds=offset)
    found = schedule.next_after(after)
    assert found > after and schedule.matches(found)
    probe = after.replace(microsecond=0) + timedelta(seconds=1)
    while probe < found:
        assert not schedule.matches(probe)
        probe += timedelta(seconds=1)
