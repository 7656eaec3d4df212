"""Token buckets per caller, driven by a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import TooManyRequests
from core.ratelimit import MAX_TRACKED, RateLimiter


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def burst(limiter: RateLimiter, caller: str, count: int) -> None:
    for _ in range(count):
        limiter.check(caller)


def refused(limiter: RateLimiter, caller: str) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as caught:
        limiter.check(caller)
    return caught.value


@pytest.mark.parametrize("per_minute", [1, 2, 60, 600])
def test_a_caller_may_burst_a_minutes_worth_then_is_refused(per_minute: int) -> None:
    limiter = RateLimiter(per_minute, clock=FakeClock())
    burst(limiter, "alice", per_minute)
    error = refused(limiter, "alice")
    assert error.status == 429
    assert str(per_minute) in error.detail


@pytest.mark.parametrize(("per_minute", "retry_after"), [(1, 60), (2, 30), (7, 9), (60, 1), (600, 1)])
def test_retry_after_is_when_the_next_token_arrives(per_minute: int, retry_after: int) -> None:
    limiter = RateLimiter(per_minute, clock=FakeClock())
    burst(limiter, "alice", per_minute)
    error = refused(limiter, "alice")
    assert error.retry_after == retry_after
    assert f"{retry_after} s" in error.detail


def test_retry_after_shrinks_as_the_bucket_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock)
    limiter.check("alice")
    assert refused(limiter, "alice").retry_after == 60
    clock.advance(45)
    assert refused(limiter, "alice").retry_after == 15
    clock.advance(14.5)
    assert refused(limiter, "alice").retry_after == 1


def test_refused_requests_do_not_use_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    burst(limiter, "alice", 60)
    for _ in range(100):
        refused(limiter, "alice")
    clock.advance(1)
    limiter.check("alice")


def test_tokens_come_back_at_the_per_minute_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    burst(limiter, "alice", 60)
    clock.advance(10)
    burst(limiter, "alice", 10)
    refused(limiter, "alice")


def test_the_bucket_never_holds_more_than_a_minutes_worth() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    limiter.check("alice")
    clock.advance(3600)
    burst(limiter, "alice", 10)
    refused(limiter, "alice")


@given(
    per_minute=st.integers(min_value=1, max_value=100_000),
    start=st.floats(min_value=0, max_value=1e7, allow_nan=False),
)
def test_waiting_retry_after_seconds_is_always_enough(per_minute: int, start: float) -> None:
    clock = FakeClock(start)
    limiter = RateLimiter(per_minute, clock=clock)
    burst(limiter, "alice", per_minute)
    error = refused(limiter, "alice")
    assert 1 <= error.retry_after <= 60
    clock.advance(error.retry_after)
    limiter.check("alice")


def test_callers_have_their_own_buckets() -> None:
    limiter = RateLimiter(3, clock=FakeClock())
    burst(limiter, "alice", 3)
    refused(limiter, "alice")
    burst(limiter, "bob", 3)
    refused(limiter, "bob")
    refused(limiter, "alice")


def test_the_oldest_callers_are_forgotten_beyond_the_cap() -> None:
    limiter = RateLimiter(1, clock=FakeClock())
    limiter.check("alice")
    others = [f"caller-{index}" for index in range(MAX_TRACKED - 1)]
    for caller in others:
        limiter.check(caller)
    refused(limiter, "alice")  # still tracked: the cap holds MAX_TRACKED callers
    limiter.check("one-more")
    # alice, refused last, was the most recent; the oldest is caller-0, whose bucket starts full again.
    limiter.check("caller-0")
    refused(limiter, "alice")


def test_a_caller_pushed_out_by_many_others_starts_with_a_full_bucket() -> None:
    limiter = RateLimiter(1, clock=FakeClock())
    limiter.check("alice")
    refused(limiter, "alice")
    for index in range(MAX_TRACKED):
        limiter.check(f"caller-{index}")
    limiter.check("alice")  # forgotten, so allowed again
    refused(limiter, "caller-1")  # the tracked ones are still limited (caller-0 was evicted by alice)
