"""Pattern constraints that cannot hang a worker.

Python's ``re`` backtracks. A schema pattern such as ``(a+)+`` takes exponential time on a cell like
``aaaa…a!``, and ``re`` holds the GIL for the whole match: one such cell would freeze every function in the
process, other users' requests included. So Loadbay matches in-process only the simplest patterns, whose
work per character of a cell their shape bounds (``is_linear``): short sequences of characters and
repeated characters, such as ``[A-Z]{2}-[0-9]{4}``, ``\\d+`` or ``[a-z]+\\.csv``; the worst of them
take about 15 ms on a 32,768-character cell (``core.validation`` matches at most about 64 KB of cells in
one call, so the GIL is let go between calls). Any other pattern is matched by
``unmatched_offsets`` in a child Python process (the same interpreter and ``re``, so the same verdicts)
that gets ``seconds`` per batch of cells; a child over its time is killed, and ``PatternTooSlow`` says so.

Children are started on first use (about 20 ms), kept for the next batch, and leave by themselves when
their input closes or after ``CHILD_CPU_SECONDS`` of work. They ignore SIGINT and SIGTERM, which a
terminal or a process manager sends the host's whole process group: the host decides when they end. Each
batch also sets the child's CPU limit to its time plus two seconds, so a child whose parent died mid-match
ends that much later; an address-space cap turns a runaway pattern's memory into an error.
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

# In-process patterns: at most these steps per character of a cell (the ways to split times the fixed
# width): a 32,768-character cell then costs at most about 15 ms.
MAX_STEPS_PER_CHARACTER: Final = 64
MAX_SOURCE_CHARS: Final = 256
MAX_CLASS_CATEGORIES: Final = 4
SMALL_SPREAD: Final = 16  # a repeat with at most 1 + this many counts to try ({1,3}) is a few choices
LONG_RUN: Final = 64  # a repeat that may take more characters than this counts as open-ended
CHILD_CPU_SECONDS: Final = 30  # a child leaves after this much matching (its successor starts in ~20 ms)
CHILD_MEMORY_BYTES: Final = 512 << 20  # a batch of 512 cells of 32,768 characters fits
IDLE_CHILDREN: Final = 4  # kept between batches; more run at once when more threads match at once

# CPython's own regular expression parser (core.validation uses it too); its stand-ins sre_parse and
# sre_constants are deprecated.
re_constants: Any = importlib.import_module("re._constants")
re_parser: Any = importlib.import_module("re._parser")
_sre, _sre_parse = re_constants, re_parser


class PatternTooSlow(Exception):
    """A pattern took longer than its time on a batch of cells, or its child met an error (out of memory)."""


# --- which patterns are safe to match in-process ---------------------------------------------------

_ONE_CHARACTER: Final = frozenset((_sre.LITERAL, _sre.NOT_LITERAL, _sre.IN, _sre.ANY))
_REPEATS: Final = frozenset((_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT))
_CLASS_ITEMS: Final = frozenset((_sre.LITERAL, _sre.RANGE, _sre.CATEGORY, _sre.NEGATE))


def is_linear(source: str) -> bool:
    """Say whether a Python pattern is simple enough to match in-process, at a small cost per character.

    Only a short sequence of anchors, characters (literals, ".", classes of Basic Multilingual Plane
    characters, which ``re`` tests in one step) and repeated characters, in plain groups, qualifies, with
    at most one open-ended repeat (more than SMALL_SPREAD counts to try, or more than LONG_RUN
    characters). Backtracking then tries each count of that repeat once per way of splitting the rest,
    and each try walks the rest: at most MAX_STEPS_PER_CHARACTER steps per character of the cell. No
    alternation, lookaround, back reference or repeated group: a pattern this refuses is not known to be
    slow, only not known to be fast, and is matched in a child process.
    """
    if len(source) > MAX_SOURCE_CHARS:
        return False
    try:
        atoms = _atoms(_sre_parse.parse(source))
    except (re.error, RecursionError, OverflowError):
        return False
    if atoms is None:
        return False
    open_ended, ways, width = 0, 1, 0
    for low, high, possessive in atoms:
        if high - low > SMALL_SPREAD or high > LONG_RUN:
            open_ended += 1
            continue
        width += max(high, 1)  # an anchor is a step on every path too
        if not possessive:
            ways *= high - low + 1
    return open_ended <= 1 and ways * (width + 1) <= MAX_STEPS_PER_CHARACTER


def _atoms(items: Any) -> list[tuple[int, int, bool]] | None:
    """Return (fewest, most, possessive) per step of a plain sequence (0, 0 for an anchor); None otherwise."""
    atoms: list[tuple[int, int, bool]] = []
    for op, argument in items:
        if op is _sre.AT:
            atoms.append((0, 0, False))
        elif _one_step(op, argument):
            atoms.append((1, 1, False))
        elif op in _REPEATS and len(argument[2]) == 1 and _one_step(*argument[2][0]):
            atoms.append((argument[0], argument[1], op is _sre.POSSESSIVE_REPEAT))
        elif op is _sre.SUBPATTERN:
            inner = _atoms(argument[3])
            if inner is None:
                return None
            atoms += inner
        else:
            return None
    return atoms


def _one_step(op: Any, argument: Any) -> bool:
    """Say whether a node tests one character in one step: a class only if re can make it a bitmap."""
    if op is not _sre.IN:
        return op in _ONE_CHARACTER
    if sum(item is _sre.CATEGORY for item, _ in argument) > MAX_CLASS_CATEGORIES:
        return False  # categories (\d, \w, \s) are tested one after the other
    for item, value in argument:
        if item not in _CLASS_ITEMS:
            return False
        if (item is _sre.LITERAL and value > 0xFFFF) or (item is _sre.RANGE and value[1] > 0xFFFF):
            return False  # beyond the bitmap: re tests such items one by one
    return True


# --- matching in a child process ----------------------------------------------------------------------

# The child: read (pattern, seconds, cells) frames and answer ("ok", offsets of the cells that do not fully
# match, done) or ("error", why, done). Standard library only, run with -I -S: nothing from the app or site.
_CHILD_SOURCE: Final = r"""
import marshal, re, resource, signal, struct, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)

def limit(kind, soft):
    hard = resource.getrlimit(kind)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):
        pass

limit(resource.RLIMIT_AS, {memory})
limit(resource.RLIMIT_CORE, 0)  # SIGXCPU, at the CPU limit, would otherwise dump core
read, write = sys.stdin.buffer, sys.stdout.buffer
compiled = {{}}
while True:
    size = read.read(8)
    if len(size) < 8:
        break
    try:
        source, seconds, cells = marshal.loads(read.read(struct.unpack("<Q", size)[0]))
        # The parent stops a batch after `seconds` of its clock; should the parent die first, this ends it.
        limit(resource.RLIMIT_CPU, int(time.process_time() + seconds) + 2)
        fullmatch = compiled.get(source)
        if fullmatch is None:
            if len(compiled) >= 256:
                compiled.clear()
            fullmatch = compiled[source] = re.compile(source).fullmatch
        answer = ("ok", [offset for offset, cell in enumerate(cells) if fullmatch(cell) is None])
    except MemoryError:
        answer = ("error", "ran out of memory")
    except RecursionError:
        answer = ("error", "nests too deeply")
    except Exception as error:
        answer = ("error", "could not be matched (" + type(error).__name__ + ")")
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
        assert self.process.stdout is not None
        self.answers = self.process.stdout.fileno()
        self.poller = select.poll()  # not select.select: it fails on descriptors past 1,023
        self.poller.register(self.answers, select.POLLIN)
        self.done = False

    def ask(self, source: str, cells: list[str], seconds: float) -> list[int]:
        """Send one batch; return the offsets of the cells that do not match (raising, the child is spent)."""
        assert self.process.stdin is not None
        deadline = time.monotonic() + seconds
        payload = marshal.dumps((source, seconds, cells))
        self.process.stdin.write(struct.pack("<Q", len(payload)) + payload)
        self.process.stdin.flush()
        size = struct.unpack("<Q", self._read(8, deadline))[0]
        status, value, self.done = marshal.loads(self._read(size, deadline))
        if status != "ok":
            self.done = True
            raise PatternTooSlow(value)
        offsets: list[int] = value
        return offsets

    def _read(self, size: int, deadline: float) -> bytes:
        parts = bytearray()
        while len(parts) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not self.poller.poll(left * 1000):
                raise TimeoutError
            part = os.read(self.answers, size - len(parts))
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
    deadline = time.monotonic() + seconds
    child = _borrow()
    for attempt in range(2):
        try:
            offsets = child.ask(source, batch, max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            child.close()
            raise PatternTooSlow(f"took longer than {seconds:g} seconds") from None
        except (OSError, EOFError, ValueError):  # the child died (killed from outside, say)
            child.close()
            if attempt:
                raise
            child = _Child()  # one try with a child just started, in the time left
            continue
        except BaseException:
            child.close()
            raise
        _give_back(child)
        return offsets
    raise AssertionError("unreachable")


def _borrow() -> _Child:
    """Return an idle child that is still running, or a new one."""
    while True:
        with _idle_lock:
            child = _idle.pop() if _idle else None
        if child is None:
            return _Child()
        if child.process.poll() is None:
            return child
        child.close()


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
