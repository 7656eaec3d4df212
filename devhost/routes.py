"""Match request paths against ASP.NET Core route templates, as the Functions host routes HTTP triggers."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

Target = TypeVar("Target")

# Precedence digits from ASP.NET Core's RoutePrecedence (inbound): lower wins.
_LITERAL, _COMPLEX, _CONSTRAINED, _PARAMETER, _CATCH_ALL = 1, 2, 3, 4, 5
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
_HEX_D = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_GUID = re.compile(rf"[0-9A-Fa-f]{{32}}|{_HEX_D}|\{{{_HEX_D}\}}|\({_HEX_D}\)")


class RouteTemplateError(ValueError):
    """A route template cannot be parsed."""


def _is_int(text: str, bounds: tuple[int, int]) -> bool:
    return re.fullmatch(r"[+-]?\d+", text) is not None and bounds[0] <= int(text) <= bounds[1]


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None and math.isfinite(float(text))


def _is_decimal(text: str) -> bool:
    return _DECIMAL.fullmatch(text) is not None


def _is_guid(text: str) -> bool:
    # .NET Guid.TryParse accepts the N, D, B and P formats.
    return _GUID.fullmatch(text) is not None


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _one_int(name: str, args: Sequence[str]) -> int:
    if len(args) != 1 or not _is_int(args[0], _INT64):
        raise RouteTemplateError(f"constraint {name} needs one integer argument, got {args!r}")
    return int(args[0])


def _two_ints(name: str, args: Sequence[str]) -> tuple[int, int]:
    if len(args) != 2 or not all(_is_int(arg, _INT64) for arg in args):
        raise RouteTemplateError(f"constraint {name} needs two integer arguments, got {args!r}")
    return int(args[0]), int(args[1])


Check = Callable[[str], bool]


def _length_check(args: Sequence[str]) -> Check:
    if len(args) == 1:
        exact = _one_int("length", args)
        return lambda value: len(value) == exact
    low, high = _two_ints("length", args)
    return lambda value: low <= len(value) <= high


def _range_check(low: int, high: int) -> Check:
    return lambda value: _is_int(value, _INT64) and low <= int(value) <= high


def _regex_check(args: Sequence[str]) -> Check:
    if len(args) != 1:
        raise RouteTemplateError("constraint regex needs one argument")
    try:
        # ASP.NET's RegexRouteConstraint uses IsMatch (not anchored) with IgnoreCase.
        pattern = re.compile(args[0], re.IGNORECASE)
    except re.error as error:
        raise RouteTemplateError(
            f"constraint regex({args[0]}) is not a valid regular expression: {error}"
        ) from None
    return lambda value: pattern.search(value) is not None


_SIMPLE_CHECKS: dict[str, Check] = {
    "int": lambda value: _is_int(value, _INT32),
    "long": lambda value: _is_int(value, _INT64),
    "bool": lambda value: value.lower() in ("true", "false"),
    "datetime": _is_datetime,
    "decimal": _is_decimal,
    "double": _is_number,
    "float": _is_number,
    "guid": _is_guid,
    "alpha": lambda value: re.fullmatch(r"[A-Za-z]+", value) is not None,
    "required": lambda value: value != "",
    "nonfile": lambda value: "." not in value.rsplit("/", 1)[-1],
    "file": lambda value: "." in value.rsplit("/", 1)[-1],
}


def build_constraint(text: str) -> Check:
    """Turn one constraint such as `int`, `min(1)` or `regex(^a+$)` into a check on the raw value."""
    match = re.fullmatch(r"([A-Za-z]+)(?:\((.*)\))?", text, re.DOTALL)
    if match is None:
        raise RouteTemplateError(f"constraint {text!r} is not valid")
    name, raw_args = match.group(1).lower(), match.group(2)
    if name in _SIMPLE_CHECKS and raw_args is None:
        return _SIMPLE_CHECKS[name]
    if name == "regex":
        return _regex_check([raw_args or ""])
    args = [arg.strip() for arg in (raw_args or "").split(",")] if raw_args is not None else []
    if name == "minlength":
        least = _one_int(name, args)
        return lambda value: len(value) >= least
    if name == "maxlength":
        most = _one_int(name, args)
        return lambda value: len(value) <= most
    if name == "length":
        return _length_check(args)
    if name == "min":
        return _range_check(_one_int(name, args), _INT64[1])
    if name == "max":
        return _range_check(_INT64[0], _one_int(name, args))
    if name == "range":
        return _range_check(*_two_ints(name, args))
    raise RouteTemplateError(f"constraint {text!r} is not a known route constraint")


@dataclass(frozen=True)
class Parameter:
    """A `{name:constraint=default?}` part of a route template."""

    name: str
    checks: tuple[Check, ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    def accepts(self, value: str) -> bool:
        """Say whether a captured value satisfies every constraint."""
        return all(check(value) for check in self.checks)


Part = str | Parameter


def _split_constraints(body: str) -> list[str]:
    # Split on ':' except inside parentheses, so regex(a:b) stays whole.
    pieces: list[str] = []
    current: list[str] = []
    depth = 0
    for char in body:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == ":" and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return pieces


def parse_parameter(body: str) -> Parameter:
    """Parse the text between the braces of a route parameter."""
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    default: str | None = None
    pieces = _split_constraints(body)
    head, constraints = pieces[0], pieces[1:]
    if constraints and "=" in constraints[-1] and ")" not in constraints[-1].split("=", 1)[1]:
        constraints[-1], default = constraints[-1].split("=", 1)
    elif "=" in head:
        head, default = head.split("=", 1)
    optional = False
    if constraints and constraints[-1].endswith("?"):
        constraints[-1], optional = constraints[-1][:-1], True
    elif head.endswith("?"):
        head, optional = head[:-1], True
    if not _PARAMETER_NAME.match(head):
        raise RouteTemplateError(f"route parameter name {head!r} is not valid")
    if catch_all and optional:
        raise RouteTemplateError(f"catch-all parameter {head!r} cannot be marked optional")
    checks = tuple(build_constraint(text) for text in constraints)
    return Parameter(name=head, checks=checks, optional=optional, default=default, catch_all=catch_all)


def parse_segment(segment: str) -> list[Part]:
    """Split one path segment into literal text and parameters (`{{`/`}}` are literal braces)."""
    parts: list[Part] = []
    literal: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if segment.startswith("{{", index) or segment.startswith("}}", index):
            literal.append(char)
            index += 2
        elif char == "{":
            end = _parameter_end(segment, index)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(parse_parameter(segment[index + 1 : end].replace("{{", "{").replace("}}", "}")))
            index = end + 1
        elif char == "}":
            raise RouteTemplateError(f"unmatched '}}' in route segment {segment!r}")
        else:
            literal.append(char)
            index += 1
    if literal:
        parts.append("".join(literal))
    return parts


def _parameter_end(segment: str, start: int) -> int:
    index = start + 1
    while index < len(segment):
        if segment.startswith("}}", index):
            index += 2
        elif segment[index] == "}":
            return index
        else:
            index += 1
    raise RouteTemplateError(f"unmatched '{{' in route segment {segment!r}")


@dataclass(frozen=True)
class RouteTemplate:
    """A parsed route template compiled to one regular expression."""

    text: str
    segments: tuple[tuple[Part, ...], ...]
    pattern: re.Pattern[str]
    parameters: tuple[Parameter, ...]
    precedence: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> RouteTemplate:
        """Parse a template such as `items/{id:int}/{*rest}`."""
        stripped = text.strip()
        stripped = stripped[2:] if stripped.startswith("~/") else stripped
        stripped = stripped.strip("/")
        segments = tuple(tuple(parse_segment(raw)) for raw in stripped.split("/")) if stripped else ()
        parameters: list[Parameter] = []
        regex: list[str] = []
        for position, parts in enumerate(segments):
            regex.append(_segment_regex(parts, position, len(segments), parameters, text))
        pattern = re.compile("^" + "".join(regex) + "/?$", re.IGNORECASE | re.DOTALL)
        precedence = tuple(_segment_precedence(parts) for parts in segments)
        return cls(text=text, segments=segments, pattern=pattern, parameters=tuple(parameters),
                   precedence=precedence)  # fmt: skip

    def match(self, path: str) -> dict[str, str] | None:
        """Return the route values when the (decoded) path matches, else None.

        A trailing "/" is optional, except that a catch-all parameter keeps one it ends with (a row key
        "a/", sent as a%2F, arrives decoded).
        """
        trimmed = path.strip("/")
        found = self.pattern.match("/" + trimmed if trimmed else "")
        if found is None:
            return None
        if path.endswith("/") and trimmed and self.parameters and self.parameters[-1].catch_all:
            kept = self.pattern.match("/" + path.lstrip("/"))
            last = f"p{len(self.parameters) - 1}"
            if kept is not None and (kept.group(last) or "").endswith("/"):
                found = kept
        values: dict[str, str] = {}
        for index, parameter in enumerate(self.parameters):
            captured = found.group(f"p{index}")
            if captured is None or captured == "":
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                elif not (parameter.optional or parameter.catch_all):
                    return None
                continue
            if not parameter.accepts(captured):
                return None
            values[parameter.name] = captured
        return values


def _segment_regex(
    parts: Sequence[Part], position: int, count: int, found: list[Parameter], text: str
) -> str:
    pieces: list[str] = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(re.escape(part))
            continue
        if part.catch_all and position != count - 1:
            raise RouteTemplateError(f"route {text!r}: a catch-all parameter must be the last segment")
        if any(existing.name.lower() == part.name.lower() for existing in found):
            raise RouteTemplateError(f"route {text!r}: parameter {part.name!r} appears twice")
        group = f"p{len(found)}"
        found.append(part)
        pieces.append(f"(?P<{group}>.*)" if part.catch_all else f"(?P<{group}>[^/]+)")
    body = "".join(pieces)
    lone = len(parts) == 1 and isinstance(parts[0], Parameter)
    if lone and isinstance(parts[0], Parameter) and (parts[0].optional or parts[0].default is not None):
        if position != count - 1:
            raise RouteTemplateError(f"route {text!r}: an optional parameter must be the last segment")
        return f"(?:/{body})?"
    if lone and isinstance(parts[0], Parameter) and parts[0].catch_all:
        return f"(?:/{body})?"
    return "/" + body


def _segment_precedence(parts: Sequence[Part]) -> int:
    if len(parts) > 1:
        return _COMPLEX
    only = parts[0]
    if isinstance(only, str):
        return _LITERAL
    if only.catch_all:
        return _CATCH_ALL
    return _CONSTRAINED if only.checks else _PARAMETER


@dataclass(frozen=True)
class Route(Generic[Target]):
    """A template, the methods it answers (None: any) and what it leads to."""

    template: RouteTemplate
    methods: frozenset[str] | None
    target: Target


@dataclass
class Router(Generic[Target]):
    """Routes ordered by ASP.NET precedence: literals before constrained parameters before catch-alls."""

    routes: list[Route[Target]] = field(default_factory=list)

    def add(self, template: str, methods: Iterable[str] | None, target: Target) -> Route[Target]:
        """Add a route; raise RouteTemplateError when the template is malformed."""
        method_set = frozenset(method.upper() for method in methods) if methods else None
        route = Route(RouteTemplate.parse(template), method_set, target)
        self.routes.append(route)
        self.routes.sort(key=lambda item: (item.template.precedence, item.template.text.lower()))
        return route

    def match(self, method: str, path: str) -> tuple[Route[Target], dict[str, str]] | None:
        """Find the route for a method and path; a path that only matches other methods is no match."""
        for route in self.routes:
            if route.methods is not None and method.upper() not in route.methods:
                continue
            values = route.template.match(path)
            if values is not None:
                return route, values
        return None
