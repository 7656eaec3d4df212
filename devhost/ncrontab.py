"""Parse NCRONTAB schedules (6 fields with seconds; 5 accepted too) and find their next occurrence in UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from devhost.config import ConfigError, parse_timespan

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_DAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
# (name, lowest, highest, names) for second, minute, hour, day of month, month, day of week.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
# Far enough for any satisfiable expression (29 February on a Monday recurs within 28 years).
_SEARCH_YEARS = 30


class Schedule(Protocol):
    """Anything that can say when it next fires."""

    def next_after(self, moment: datetime) -> datetime:
        """Return the first occurrence strictly after `moment` (UTC)."""
        ...


def _value(text: str, field: tuple[str, int, int, dict[str, int]], expression: str) -> int:
    name, low, high, names = field
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise ConfigError(f"schedule {expression!r}: {text!r} is not a valid {name}")
    number = int(text)
    if not low <= number <= high:
        raise ConfigError(f"schedule {expression!r}: {name} {number} is outside {low}-{high}")
    return number


def _parse_item(item: str, field: tuple[str, int, int, dict[str, int]], expression: str) -> set[int]:
    _, low, high, _ = field
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise ConfigError(f"schedule {expression!r}: step {step_text!r} must be a positive integer")
        step = int(step_text)
    if base == "*":
        start, end = low, high
    elif "-" in base:
        first, _, last = base.partition("-")
        start, end = _value(first, field, expression), _value(last, field, expression)
        if start > end:
            raise ConfigError(f"schedule {expression!r}: range {base!r} runs backwards")
    else:
        start = _value(base, field, expression)
        # NCrontab reads "a/n" as "from a to the end, every n".
        end = high if slash else start
    return set(range(start, end + 1, step))


def _parse_field(text: str, field: tuple[str, int, int, dict[str, int]], expression: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ConfigError(f"schedule {expression!r}: empty list item in {field[0]} field")
        values |= _parse_item(item, field, expression)
    return frozenset(values)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class CronSchedule:
    """An NCRONTAB expression: second minute hour day month day-of-week, all in UTC."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse a 6-field expression (a 5-field one means second 0)."""
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise ConfigError(
                f"schedule {expression!r}: expected 6 fields (second minute hour day month weekday)"
            )
        fields = [_parse_field(text, field, expression) for text, field in zip(parts, _FIELDS, strict=True)]
        return cls(expression, *fields)

    def matches(self, moment: datetime) -> bool:
        """Say whether the schedule fires at this second (day and weekday must both match, as in NCrontab)."""
        moment = _as_utc(moment)
        return (
            moment.second in self.seconds
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and self._day_matches(moment)
        )

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # Python counts from Monday, cron from Sunday
        return moment.month in self.months and moment.day in self.days and weekday in self.weekdays

    def next_after(self, moment: datetime) -> datetime:
        """Return the first matching second strictly after `moment`, skipping whole months, days and hours."""
        current = _as_utc(moment).replace(microsecond=0) + timedelta(seconds=1)
        limit = current.year + _SEARCH_YEARS
        while current.year <= limit:
            if current.month not in self.months:
                month_start = current.replace(day=1, hour=0, minute=0, second=0)
                current = (month_start + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(current):
                current = current.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif current.hour not in self.hours:
                current = current.replace(minute=0, second=0) + timedelta(hours=1)
            elif current.minute not in self.minutes:
                current = current.replace(second=0) + timedelta(minutes=1)
            elif current.second not in self.seconds:
                later = [second for second in self.seconds if second > current.second]
                current = current.replace(second=min(later)) if later else (
                    current.replace(second=0) + timedelta(minutes=1))  # fmt: skip
            else:
                return current
        raise ConfigError(f"schedule {self.expression!r} never fires")


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule such as "00:05:00": every interval, counted from the previous run."""

    expression: str
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        """Return `moment` plus the interval."""
        return _as_utc(moment) + self.interval


def parse_schedule(expression: str) -> CronSchedule | IntervalSchedule:
    """Parse a timer trigger's schedule: NCRONTAB, or a TimeSpan like the host accepts."""
    text = expression.strip()
    if ":" in text and " " not in text:
        seconds = parse_timespan(text, what=f"schedule {expression!r}")
        if seconds <= 0:
            raise ConfigError(f"schedule {expression!r}: the interval must be positive")
        return IntervalSchedule(text, timedelta(seconds=seconds))
    return CronSchedule.parse(text)
