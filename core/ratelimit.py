"""Requests per principal: a token bucket per caller, per process (each instance counts on its own)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Final

from core.errors import TooManyRequests

MAX_TRACKED: Final = 10_000


class RateLimiter:
    """Allow `per_minute` requests a minute per caller, in bursts of up to a minute's worth."""

    def __init__(self, per_minute: int, *, clock: object = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, caller: str) -> None:
        """Take one token for `caller`, or raise TooManyRequests saying when to come back."""
        now = self._clock()  # type: ignore[operator]
        with self._lock:
            tokens, last = self._buckets.pop(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1.0 - 1e-9:  # float rounding must not refuse a caller who waited retry_after
                self._buckets[caller] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise TooManyRequests(
                    f"Too many requests: the limit is {int(self.capacity)} a minute; try again in {wait} s.",
                    retry_after=wait,
                )
            self._buckets[caller] = (tokens - 1.0, now)
            while len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
