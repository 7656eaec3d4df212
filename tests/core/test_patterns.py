"""Schema patterns: the regex module reads them as re does, and a value that backtracks for ever stops."""

from __future__ import annotations

import random
import re
import time
import warnings

import pytest

from core.mapping import map_columns
from core.tableschema import (
    PATTERN_SECONDS,
    PatternTooSlow,
    _python_pattern,
    bounded_fullmatch,
    compile_pattern,
    parse_table_schema,
    regex_module_pattern,
)
from core.validation import Validator

# Patterns re accepts, among them everything the regex module would read differently if passed as is.
PATTERNS = [
    r"[A-Z]{2}-[0-9]{4}",
    r"a{,3}",
    r"a{,}",
    r"a{}",
    r"a{x}",
    r"{",
    r"a{1",
    r"a{1,2",
    r"[[:alpha:]]+",
    r"[[]",
    r"[]a]",
    r"[^]a]",
    r"[^[]",
    r"a{e<=1}",
    r"(?:ab){e<=1}",
    r"\d+",
    r"\w+",
    r"\s",
    r"(a)\1",
    r"(?P<n>a)(?P=n)",
    r"(?=a)a",
    r"(?!b).",
    r"(?<=a)b",
    r"a++",
    r"(?>a+)b",
    r"[\]]",
    r"[a\-z]",
    r"\x41",
    r"\u00e9",
    r"\N{LATIN SMALL LETTER E WITH ACUTE}+",
    r"[a-z&&[^x]]",
    r"[a||b]",
    r"[a~~b]",
    r"\b\w\b",
    r"a|b|",
    r"(?s:.)",
    r"(?a:\w)",
    r"[a-]",
    r"a{1,2}?",
    r"a{,2}+",
    r"(?:a|ab)(c|bcd)(d*)",
    r"^[a-c]+$",
]
ALPHABET = "ab{}[]:e<=1-xz\u00e9A9 _\n.,|&~^"
SAMPLES = ["a", "aa", "[:alpha:]", "{e<=1}", "a{e<=1}", "ab{e<=1}", "[", "]", "]a", "{", "{}", "a{}", "a{x}",
           "a{1", "&&", "é", "éé", "AB-1234", "abc", ""]  # fmt: skip


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_regex_module_matches_what_re_matches(pattern: str) -> None:
    body = _python_pattern(pattern)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # re warns about "[[" and friends
        expected = re.compile(body)
    compiled = compile_pattern(pattern)
    rng = random.Random(pattern)
    texts = SAMPLES + ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6))) for _ in range(3_000)]
    differing = [
        text for text in texts if (expected.fullmatch(text) is None) != (compiled.fullmatch(text) is None)
    ]
    assert differing == []


def test_only_what_the_regex_module_reads_differently_is_escaped() -> None:
    assert regex_module_pattern(r"(?:[A-Z]{2}-[0-9]{4})") == r"(?:[A-Z]{2}-[0-9]{4})"
    assert regex_module_pattern(r"[[:alpha:]]") == r"[\[:alpha:]]"
    assert regex_module_pattern(r"a{e<=1}{2}{}") == r"a\{e<=1}{2}\{}"
    assert regex_module_pattern(r"[]{]\N{DIGIT ONE}{3}") == r"[\]{]\N{DIGIT ONE}{3}"


@pytest.mark.parametrize("pattern", [r"(a|a)*", r"(a|aa)*", r"(a+){1,100}"])
def test_a_value_that_makes_a_pattern_backtrack_for_ever_is_stopped(pattern: str) -> None:
    match = bounded_fullmatch(compile_pattern(pattern), "code", pattern)
    assert match("aaaa") is not None
    started = time.monotonic()
    with pytest.raises(PatternTooSlow) as stopped:
        match("a" * 60 + "b")
    assert time.monotonic() - started < PATTERN_SECONDS * 3
    message = str(stopped.value)
    assert f'The pattern "{pattern}" of field "code" took more than' in message
    assert "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…'" in message


def validator(pattern: str) -> Validator:
    schema = parse_table_schema(
        {"fields": [{"name": "id", "type": "integer"}, {"name": "code", "constraints": {"pattern": pattern}}]}
    )
    return Validator(schema, map_columns(schema, ["id", "code"]))


@pytest.mark.parametrize("pattern", [r"(a|a)*", r"(a|aa)*;?"])  # the second may match line-joined cells
def test_validating_a_column_stops_at_the_value_that_backtracks_for_ever(pattern: str) -> None:
    rows = [[str(number), "a" * (number % 5)] for number in range(1, 2_001)]
    rows[1_500][1] = "a" * 60 + "b"
    started = time.monotonic()
    with pytest.raises(PatternTooSlow) as stopped:
        validator(pattern).validate_chunk(rows, first_row=1)
    assert time.monotonic() - started < PATTERN_SECONDS * 5
    assert stopped.value.value == "a" * 60 + "b"


@pytest.mark.parametrize("pattern", [r"(a|aa)*", r"(a|aa)*;?", r"[ab]{2,}"])
def test_patterns_still_find_exactly_the_values_that_do_not_match(pattern: str) -> None:
    cells = ["", "a", "aa", "ab", "b", "aab", "aaaa", "a\nb", "c", "bb"]
    rows = [[str(number), cell] for number, cell in enumerate(cells * 50, start=1)]
    result = validator(pattern).validate_chunk(rows, first_row=1)
    expected = re.compile(_python_pattern(pattern))
    wrong = {
        number for number, (_, cell) in enumerate(rows, start=1) if cell and not expected.fullmatch(cell)
    }
    assert {error.row for error in result.errors} == wrong
    assert {error.code for error in result.errors} == ({"pattern"} if wrong else set())
