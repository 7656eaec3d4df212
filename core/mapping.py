"""Decide which CSV column feeds each schema field, before any row is read.

Automatic mapping takes, for each field, the header with exactly its name, else the one header whose
normalised name matches (case, spaces, underscores, hyphens, dots and accents ignored: ``First Name``,
``first_name`` and ``FIRST-NAME`` all match ``firstName``). An explicit ``mapping`` ``{field: header}``
wins for the fields it names (``null`` leaves a field unmapped on purpose); the other fields are still
mapped automatically, from the headers the explicit mapping did not take.

Refused with one ``Invalid`` listing every problem: a mapping key that is no field, a header that is not
in the file or is there twice, a header that would feed two fields, a field that several headers match
equally well, and a required or primary-key field left without a column. A header an export wrote
with ``safeCells`` (``'@handle`` for the field ``@handle``) maps as the name it stands for. CSV columns
that feed no field are ignored: they are reported in ``ColumnMapping.ignored`` so the review can show
them, and rows are not invalid because of them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import Invalid
from core.rows import unsafe_cell
from core.tableschema import TableSchema

_IGNORED_CHARS = str.maketrans("", "", " _-.\t")


@dataclass(frozen=True)
class ColumnMapping:
    """For each schema field (in schema order), the index of the CSV column that feeds it, or None."""

    header: tuple[str, ...]
    field_names: tuple[str, ...]
    sources: tuple[int | None, ...]

    @property
    def ignored(self) -> tuple[str, ...]:
        """Return the headers of the CSV columns that feed no field."""
        used = set(self.sources)
        return tuple(name for index, name in enumerate(self.header) if index not in used)

    def to_json(self) -> dict[str, Any]:
        """Return {"fields": {field: header or null}, "ignored": [header, ...]}."""
        fields = {
            name: (None if source is None else self.header[source])
            for name, source in zip(self.field_names, self.sources, strict=True)
        }
        return {"fields": fields, "ignored": list(self.ignored)}


def normalise_header(name: str) -> str:
    """Return name with accents, case, spaces, underscores, hyphens and dots folded away."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return bare.casefold().translate(_IGNORED_CHARS)


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, field_name: str | None, code: str, message: str) -> None:
        self.items.append({"field": field_name, "code": code, "message": message})


def map_columns(
    schema: TableSchema, header: Sequence[str], mapping: Mapping[str, Any] | None = None
) -> ColumnMapping:
    """Map CSV columns to schema fields; raise Invalid listing every problem."""
    problems = _Problems()
    names = schema.field_names
    claims: dict[str, int | None] = {}
    explicit = _explicit(names, header, mapping or {}, claims, problems)
    _automatic([name for name in names if name not in explicit], header, claims, problems)
    _check_claims(schema, header, claims, problems)
    if problems.items:
        count = len(problems.items)
        noun = "problem" if count == 1 else "problems"
        raise Invalid(f"The column mapping has {count} {noun}.", problems=problems.items)
    return ColumnMapping(
        header=tuple(header), field_names=names, sources=tuple(claims.get(name) for name in names)
    )


def _explicit(
    names: Sequence[str],
    header: Sequence[str],
    mapping: Mapping[str, Any],
    claims: dict[str, int | None],
    problems: _Problems,
) -> set[str]:
    if not isinstance(mapping, Mapping):
        problems.add(None, "badMapping", "mapping must be an object {fieldName: headerName}.")
        return set()
    for target, column in mapping.items():
        if target not in names:
            problems.add(target, "unknownField", f'The mapping names "{target}", which is not a field.')
        elif column is None:
            claims[target] = None
        elif not isinstance(column, str):
            problems.add(target, "badMapping", f'Field "{target}": map it to a header name (a string).')
        else:
            claims[target] = _header_index(target, column, header, problems)
    return {str(target) for target in mapping}


def _header_index(target: str, column: str, header: Sequence[str], problems: _Problems) -> int | None:
    positions = [index for index, name in enumerate(header) if name == column]
    if not positions:
        problems.add(target, "unknownColumn", f'Field "{target}": the file has no column "{column}".')
        return None
    if len(positions) > 1:
        problems.add(
            target, "ambiguousColumn", f'Field "{target}": the file has {len(positions)} columns "{column}".'
        )
        return None
    return positions[0]


def _automatic(
    names: Sequence[str], header: Sequence[str], claims: dict[str, int | None], problems: _Problems
) -> None:
    taken = {index for index in claims.values() if index is not None}
    # A header an export wrote with safeCells has a ' before a name a spreadsheet would run ("'+/- change"):
    # it names the field without it.
    plain = [unsafe_cell(column) for column in header]
    pending: list[str] = []
    for name in names:
        exact = [index for index, column in enumerate(header) if column == name and index not in taken]
        if not exact:
            exact = [index for index, column in enumerate(plain) if column == name and index not in taken]
        if len(exact) == 1:
            claims[name] = exact[0]
            taken.add(exact[0])
        else:
            pending.append(name)
    # Exact names first, so "a-b" and "a_b" fields each keep their own column when both are there.
    taken = {index for index in claims.values() if index is not None}
    normalised = [normalise_header(column) for column in plain]
    for name in pending:
        key = normalise_header(name)
        matches = [index for index, column in enumerate(normalised) if column == key and index not in taken]
        if len(matches) == 1:
            claims[name] = matches[0]
        elif matches:
            listed = ", ".join(f'"{header[index]}"' for index in matches)
            problems.add(
                name,
                "ambiguousColumn",
                f'Field "{name}": several columns could feed it ({listed}); map it explicitly.',
            )


def _check_claims(
    schema: TableSchema, header: Sequence[str], claims: dict[str, int | None], problems: _Problems
) -> None:
    by_column: dict[int, list[str]] = {}
    for name, index in claims.items():
        if index is not None:
            by_column.setdefault(index, []).append(name)
    for index, fields in sorted(by_column.items()):
        if len(fields) > 1:
            listed = ", ".join(f'"{name}"' for name in fields)
            problems.add(
                fields[1], "columnMappedTwice", f'Column "{header[index]}" is mapped to {listed}; one only.'
            )
    for item in schema.fields:
        if claims.get(item.name) is None and item.constraints.required:
            why = "a primary key field" if item.name in schema.primary_key else "required"
            problems.add(
                item.name,
                "unmappedRequiredField",
                f'Field "{item.name}" is {why}, but no column of the file is mapped to it.',
            )
