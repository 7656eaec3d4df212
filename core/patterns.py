"""Pattern constraints that cannot hang a worker.

Python's ``re`` backtracks. A schema pattern such as ``(a+)+`` takes exponential time on a cell like
``aaaa…a!``, and ``re`` holds the GIL for the whole match: one such cell would freeze every function in the
process, other users' requests included. So Loadbay matches in-process only the patterns whose
backtracking is bounded by their shape (``is_linear``: at most one open-ended repeat and few choices, as
with ``[A-Z]{2}-[0-9]{4}`` or ``[a-z]+\\.csv``). Any other pattern is matched by ``unmatched_offsets`` in a
child Python process (the same interpreter and ``re``, so the same verdicts) that gets ``seconds`` per
batch of cells; a child over its time is killed, and ``PatternTooSlow`` says so.

Children are started on first use (about 20 ms), kept for the next batch, and leave by themselves when
their input closes or after ``CHILD_CPU_SECONDS`` of work; an address-space cap turns a runaway pattern's
memory into an error, and a CPU cap ends a child whose parent died mid-match.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import marshal
import os
import re
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

MAX_CHOICES: Final = 256  # backtracking paths a linear pattern may have, besides its one open repeat
SMALL_REPEAT: Final = 16  # a repeat with at most 1 + this many counts to try ({1,3}) is a few choices
LONG_REPEAT: Final = 64  # a repeat allowing more counts than this is treated as open-ended
CHILD_CPU_SECONDS: Final = 30  # a child leaves after this much matching (its successor starts in ~20 ms)
CHILD_MEMORY_BYTES: Final = 1 << 30
IDLE_CHILDREN: Final = 4  # kept between batches; more run at once when more threads match at once

_sre: Any = importlib.import_module("re._constants")  # CPython's own parser, as core.validation uses
_sre_parse: Any = importlib.import_module("re._parser")


class PatternTooSlow(Exception):
    """A pattern took longer than its time on a batch of cells (or broke its child's memory cap)."""


# --- which patterns are safe to match in-process ---------------------------------------------------


class _Unbounded(Exception):
    """The pattern's shape does not bound its backtracking."""


def is_linear(source: str) -> bool:
    """Say whether a Python pattern's backtracking is bounded by its shape (linear in the cell's length).

    Conservative: a pattern this refuses may still be fast; it is then matched in a child process.
    """
    try:
        open_repeats, choices = _shape(_sre_parse.parse(source))
    except (_Unbounded, re.error, RecursionError, OverflowError):  # not known to be safe
        return False
    return open_repeats <= 1 and choices <= MAX_CHOICES


_ONE_CHARACTER: Final = frozenset((_sre.LITERAL, _sre.NOT_LITERAL, _sre.IN, _sre.ANY))
_REPEATS: Final = frozenset((_sre.MAX_REPEAT, _sre.MIN_REPEAT))


def _shape(items: Any) -> tuple[int, int]:
    """Return a sequence's open-ended repeats and its number of backtracking choices (their product)."""
    open_repeats, choices = 0, 1
    for op, argument in items:
        node_open, node_choices = _node_shape(op, argument)
        open_repeats += node_open
        choices *= node_choices
        if open_repeats > 1 or choices > MAX_CHOICES:
            raise _Unbounded
    return open_repeats, choices


def _node_shape(op: Any, argument: Any) -> tuple[int, int]:
    if op in _ONE_CHARACTER or op is _sre.AT:
        return 0, 1
    if op is _sre.SUBPATTERN:
        return _shape(argument[3])
    if op is _sre.ATOMIC_GROUP:
        return _shape(argument)
    if op in (_sre.ASSERT, _sre.ASSERT_NOT):  # run again wherever backtracking passes it
        return _shape(argument[1])
    if op is _sre.BRANCH:
        shapes = [_shape(alternative) for alternative in argument[1]]
        return sum(shape[0] for shape in shapes), sum(shape[1] for shape in shapes)
    if op in _REPEATS or op is _sre.POSSESSIVE_REPEAT:
        return _repeat_shape(op, *argument)
    raise _Unbounded  # back references, conditionals, anything new


def _repeat_shape(op: Any, low: int, high: int, body: Any) -> tuple[int, int]:
    single = len(body) == 1 and body[0][0] in _ONE_CHARACTER
    if not single:
        # A body with choices of its own under a repeat can split a text many ways: (a|aa)+, (a+)+.
        open_inside, choices_inside = _shape(body)
        if open_inside or (choices_inside > 1 and (low != high or op is _sre.POSSESSIVE_REPEAT)):
            raise _Unbounded
        if choices_inside > 1:  # a fixed count of a body with choices: (ab|cd){3}
            choices = 1
            for _ in range(low):
                choices *= choices_inside
                if choices > MAX_CHOICES:
                    raise _Unbounded
            return 0, choices
    if op is _sre.POSSESSIVE_REPEAT:  # never gives back what it took
        return 0, 1
    if high - low > SMALL_REPEAT or high > LONG_REPEAT:
        # Many counts to try, or a long run each try may walk ([0-9]{1000}): as costly as an open repeat.
        return 1, 1
    return 0, high - low + 1


# --- matching in a child process ----------------------------------------------------------------------

# The child: read (pattern, cells) frames, answer ("ok", offsets of cells that do not fully match) or
# ("error", why). Standard library only, run with -I -S so nothing from the app or site is imported.
_CHILD_SOURCE: Final = r"""
import marshal, os, re, resource, struct, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
resource.setrlimit(resource.RLIMIT_CPU, ({cpu} * 2, {cpu} * 2 + 5))
read, write = sys.stdin.buffer, sys.stdout.buffer
compiled = {{}}
while True:
    size = read.read(8)
    if len(size) < 8:
        break
    source, cells = marshal.loads(read.read(struct.unpack("<Q", size)[0]))
    try:
        fullmatch = compiled.get(source)
        if fullmatch is None:
            fullmatch = compiled[source] = re.compile(source).fullmatch
        answer = ("ok", [offset for offset, cell in enumerate(cells) if fullmatch(cell) is None])
    except (MemoryError, RecursionError) as error:
        answer = ("error", type(error).__name__)
    done = time.process_time() > {cpu}
    reply = marshal.dumps((*answer, done))
    write.write(struct.pack("<Q", len(reply)) + reply)
    write.flush()
    if done:
        break
"""


class _Child:
    """One child matcher process."""

    def __init__(self) -> None:
        source = _CHILD_SOURCE.format(memory=CHILD_MEMORY_BYTES, cpu=CHILD_CPU_SECONDS)
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", source],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.done = False

    def ask(self, source: str, cells: list[str], deadline: float) -> list[int]:
        """Send one batch; return the offsets of the cells that do not match (raising, the child is spent)."""
        assert self.process.stdin is not None
        payload = marshal.dumps((source, cells))
        self.process.stdin.write(struct.pack("<Q", len(payload)) + payload)
        self.process.stdin.flush()
        size = struct.unpack("<Q", self._read(8, deadline))[0]
        status, value, self.done = marshal.loads(self._read(size, deadline))
        if status != "ok":
            self.done = True
            raise PatternTooSlow(f"ran out of memory ({value})")
        offsets: list[int] = value
        return offsets

    def _read(self, size: int, deadline: float) -> bytes:
        assert self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        parts = bytearray()
        while len(parts) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([descriptor], [], [], left)[0]:
                raise TimeoutError
            part = os.read(descriptor, size - len(parts))
            if not part:
                raise EOFError("the pattern matcher ended")
            parts += part
        return bytes(parts)

    def close(self) -> None:
        """Stop the child (by its PID) and reap it."""
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                assert stream is not None
                stream.close()
        self.process.kill()
        self.process.wait()


_idle: list[_Child] = []
_idle_lock = threading.Lock()


def unmatched_offsets(source: str, cells: Sequence[str], *, seconds: float) -> list[int]:
    """Return the offsets of the cells that do not fully match the Python pattern `source`.

    Matched in a child process given `seconds` for the whole batch; PatternTooSlow when it takes longer.
    """
    batch = list(cells)
    for attempt in range(2):
        child = _borrow()
        deadline = time.monotonic() + seconds
        try:
            offsets = child.ask(source, batch, deadline)
        except TimeoutError:
            child.close()
            raise PatternTooSlow(f"took longer than {seconds:g} seconds") from None
        except (OSError, EOFError, ValueError):  # a child that left (its CPU cap, say): one fresh try
            child.close()
            if attempt:
                raise
            continue
        except BaseException:
            child.close()
            raise
        _give_back(child)
        return offsets
    raise AssertionError("unreachable")


def _borrow() -> _Child:
    with _idle_lock:
        if _idle:
            return _idle.pop()
    return _Child()


def _give_back(child: _Child) -> None:
    if not child.done:
        with _idle_lock:
            if len(_idle) < IDLE_CHILDREN:
                _idle.append(child)
                return
    child.close()


@atexit.register
def _close_idle() -> None:
    with _idle_lock:
        children = list(_idle)
        _idle.clear()
    for child in children:
        child.close()
