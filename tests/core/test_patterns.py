"""Pattern matching that cannot hang a worker: which patterns run in-process, and the child matcher."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import patterns
from core.patterns import PatternTooSlow, is_linear, unmatched_offsets
from core.tableschema import compile_pattern


@pytest.mark.parametrize(
    "pattern",
    [
        "[A-Z]{2}-[0-9]{4}",
        r"\d+",
        r"[a-z]+\.csv",
        r"([A-Z]{2})-(\d{4})",
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        r"[A-Z]{3}\d{1,4}",
        r"\bx\S*",
        r"a*+b",  # a possessive repeat never gives back
        r"(?i:[a-z]+)",
        r"[a-z0-9._%+-]+",
        r".{0,64}",
        "",
    ],
)
def test_simple_patterns_are_matched_in_process(pattern: str) -> None:
    assert is_linear(compile_pattern(pattern).pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+",
        "(a|a)*",
        "(a|aa)+b",
        r"(\w+\s?)*",
        r"\d+\d+",  # adjacent open repeats: every split of a run of digits is tried
        r"(.*a){12}",
        r"(a)\1",  # back references
        r"(?=.*\d)[a-z\d]{8,}",  # lookarounds run again wherever backtracking passes them
        r"[0-9]{100}x*",  # a long fixed run after an open repeat: each try may walk all of it
        r"(?:[0-9]{10}){10}x*",
        r"(foo|bar)-\d{1,3}",  # alternation
        r"(?:ab)+",
        r"a*+b*+",
        r"\d{1,3}\.\d{1,3}",  # 9 ways to split, times 8 steps
        r"(?i:[a-z]{1,16})",
        # Found by a second review: anchors are steps on every path, and re tests classes beyond the
        # Basic Multilingual Plane item by item.
        r"a*a?a?a?a?a?a?a?",
        "a*a?a?" + r"\B" * 100,
        "[^" + "".join(chr(0x10000 + i) for i in range(100)) + "]*",
        r"[\d\w\s\D\W]+",
        "x" * 300,  # long patterns: the bound is per step, and every character of a pattern is one
        r"[a-z]{0,17}\d*",  # 18 counts to try count as open-ended: two open repeats
        r".{65}x*",
        # Found by review: polynomial shapes that count few choices.
        r"(?:(?![a-z]*+!)[a-z])*+",
        r"(?:(?!(?:(?![a-z]*+!)[a-z])*+!)[a-z])*+",
        r"[a-z]*(?:a|a){7}(?:(?:(?:[a-z]{64}){64}){64}|!)",
    ],
)
def test_other_patterns_go_to_a_child(pattern: str) -> None:
    assert not is_linear(compile_pattern(pattern).pattern)


def test_the_child_gives_the_verdicts_re_gives() -> None:
    source = compile_pattern(r"(\w+\s?)*").pattern
    cells = ["hello world", "m²", "\u0131", "tab\there", "", "x y  z", "\ud800", "é" * 50]
    expected = [offset for offset, cell in enumerate(cells) if re.fullmatch(source, cell) is None]
    assert expected  # the table has both kinds
    assert unmatched_offsets(source, cells, seconds=10) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab,1 ²\n", max_size=12), max_size=30))
def test_child_and_re_agree_on_any_cells(cells: list[str]) -> None:
    source = compile_pattern(r"(\d+,)*\d+|(a|ab)+").pattern
    expected = [offset for offset, cell in enumerate(cells) if re.fullmatch(source, cell) is None]
    assert unmatched_offsets(source, cells, seconds=10) == expected


def test_a_runaway_pattern_is_stopped_and_the_next_batch_gets_a_fresh_child() -> None:
    source = compile_pattern("(a+)+").pattern
    started = time.monotonic()
    with pytest.raises(PatternTooSlow, match=r"took longer than 0\.5 seconds"):
        unmatched_offsets(source, ["aaa", "a" * 60 + "!"], seconds=0.5)
    assert time.monotonic() - started < 5
    assert unmatched_offsets(source, ["aaa", "b", "aa"], seconds=10) == [1]


def test_children_are_kept_and_a_child_that_left_is_replaced() -> None:
    unmatched_offsets("a+", ["a"], seconds=10)
    kept = patterns._idle[-1]
    assert unmatched_offsets("a+", ["b"], seconds=10) == [0]
    assert patterns._idle[-1] is kept  # the same child served the second batch

    os.kill(kept.process.pid, signal.SIGKILL)
    kept.process.wait()
    assert unmatched_offsets("b+", ["b", "a"], seconds=10) == [1]
    assert kept not in patterns._idle


def test_idle_children_that_died_are_passed_over_and_a_ctrl_c_is_not_theirs() -> None:
    first, second = patterns._borrow(), patterns._borrow()
    patterns._give_back(first)
    patterns._give_back(second)
    for child in (first, second):  # the out-of-memory killer, say
        os.kill(child.process.pid, signal.SIGKILL)
        child.process.wait()
    assert unmatched_offsets("(a|b)+", ["ab", "c"], seconds=10) == [1]
    assert first not in patterns._idle and second not in patterns._idle

    survivor = patterns._idle[-1]
    os.kill(survivor.process.pid, signal.SIGINT)  # sent to the host's whole process group by a terminal
    os.kill(survivor.process.pid, signal.SIGTERM)
    time.sleep(0.2)
    assert survivor.process.poll() is None
    assert unmatched_offsets("(a|b)+", ["c", "ba"], seconds=10) == [0]
    assert patterns._idle[-1] is survivor
