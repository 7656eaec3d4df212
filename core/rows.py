"""Dataset rows in Table Storage: keys, partitions, entities, and the text a row's cells export as.

A dataset's rows live in a table of their own (``rows_table_name``): Azurite scans a whole table for
every query, so small tables keep browsing fast, and a `replace` import loads a new table (a new
*generation*) and then switches the dataset to it, so readers see the old rows or the new, never a mix.

Keys. With a primary key, a row's API key is its canonical key text (``7`` for an integer key written
``007``); a composite key joins its parts with ``,`` (a ``,`` or ``\\`` inside a part is escaped with
``\\``). Without a primary key, every imported row gets a new key from the import id and its row
number. The RowKey is the API key with the characters Table Storage forbids percent-encoded; a key too
long for a RowKey is stored under a digest, with the key itself kept in a property. The PartitionKey
spreads rows over ``PARTITIONS`` partitions by a hash of the RowKey, so loads run on many partitions.
128, not 16: an insert costs Azurite time in proportion to the size of its partition (measured: a
1,000,000-row load into 16 partitions slowed to ~500 rows/s), and a Table Storage partition is served
by one server. A chunk of 10,000 rows still fills transactions of ~70 rows per partition.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from json.encoder import encode_basestring as _text  # a str as json.dumps(ensure_ascii=False) writes it
from typing import Any, Final

from azure.data.tables import EdmType, EntityProperty

from core.tablebatch import Encoded, entity_json
from core.tableschema import Field, TableSchema

PARTITIONS: Final = 128
MAX_ROW_KEY_CHARS: Final = 255
MAX_ENTITY_BYTES: Final = 1_000_000  # Table Storage's limit is 1 MiB, with some room for the envelope.
# The import that last wrote the row and what it did: "<job id>" inserted it, "<job id>:u" updated it.
# One property, not two, so that a row of MAX_FIELDS values and a digested key (KEY_PROPERTY) stays
# within Table Storage's 252 properties of an entity's own.
JOB_PROPERTY: Final = "LoadbayJob"
OP_PROPERTY: Final = "LoadbayOp"  # rows written before JOB_PROPERTY said it kept "i" or "u" here; read only
KEY_PROPERTY: Final = "LoadbayKey"  # the API key, stored only when the RowKey is a digest
MAX_OWN_PROPERTIES: Final = 252  # 255 with PartitionKey, RowKey and Timestamp
SYSTEM_PROPERTIES: Final = frozenset(
    {"PartitionKey", "RowKey", "Timestamp", "etag", JOB_PROPERTY, OP_PROPERTY, KEY_PROPERTY}
)
_FORBIDDEN = re.compile(r"[%/\\#?\x00-\x1f\x7f-\x9f]")
_DIGESTED = re.compile(r".{200}~[0-9a-f]{40}", re.DOTALL)  # what row_key_of makes of a long key
_INJECTION_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_TEXT_TYPES: Final = frozenset(
    {"string", "any", "yearmonth", "duration", "object", "array", "geopoint", "geojson"}
)


def rows_table_name(dataset_id: str, loader_id: str) -> str:
    """Return the table a dataset's rows are loaded into: one per dataset (its first table, named with
    the dataset id) and one per replace import (named with the import id), so a table name is never
    used twice (Azure refuses a deleted table's name for a while). Alphanumeric, 53 characters."""
    return f"r{dataset_id}{loader_id}"


def rows_table_prefix(dataset_id: str) -> str:
    """Return the prefix every rows table of a dataset starts with."""
    return f"r{dataset_id}"


def partition_of(row_key: str) -> str:
    """Return the PartitionKey of a row: a stable hash of its RowKey, over PARTITIONS partitions."""
    return f"p{zlib.crc32(row_key.encode('utf-8', 'surrogatepass')) % PARTITIONS:03d}"


def row_key_of(api_key: str) -> str:
    """Return the RowKey for an API key: forbidden characters encoded, long keys digested.

    A key that already looks like a digested one (200 characters, ``~``, 40 hex digits) has its ``~``
    encoded, so no key can take the RowKey of another.
    """
    encoded = _FORBIDDEN.sub(lambda match: f"%{ord(match.group()):02X}", api_key)
    if len(encoded) <= MAX_ROW_KEY_CHARS:
        return f"{encoded[:200]}%7E{encoded[201:]}" if _DIGESTED.fullmatch(encoded) else encoded
    digest = hashlib.blake2b(api_key.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()
    return f"{encoded[:200]}~{digest}"


def key_part(item: Field, value: Any) -> str:
    """Return the canonical text of one key value (the same rule duplicate detection uses)."""
    if item.type == "boolean":
        return "true" if value else "false"
    if item.type == "number":
        return repr(value) if value else "0.0"
    if isinstance(value, date | time | datetime):
        return value.isoformat()
    return str(value)


def api_key(schema: TableSchema, values: Mapping[str, Any]) -> str:
    """Return a row's API key from its typed values (the schema must have a primary key)."""
    parts = [key_part(schema.field(name), values[name]) for name in schema.primary_key]
    if len(parts) == 1:
        return parts[0]
    return ",".join(part.replace("\\", "\\\\").replace(",", "\\,") for part in parts)


def row_entity(
    schema: TableSchema, values: Mapping[str, Any], *, key: str, job_id: str, op: str
) -> dict[str, Any]:
    """Build the Table Storage entity of a row (system stamps included)."""
    row_key = row_key_of(key)
    entity: dict[str, Any] = {
        "PartitionKey": partition_of(row_key),
        "RowKey": row_key,
        JOB_PROPERTY: writer_mark(job_id, op),
    }
    if row_key != key:
        entity[KEY_PROPERTY] = key
    for item in schema.fields:
        value = values.get(item.name)
        if value is not None:
            entity[item.property_name] = _stored(item, value)
    return entity


class RowEncoder:
    """Encodes rows of one schema for one import straight to the text `entity_json(row_entity(...))` gives.

    An import encodes every valid row once, while validating; building the entity mapping first and
    serialising it then took three times as long. Values of an unexpected Python type take that slower
    path, so the text is the same whatever the value.
    """

    def __init__(self, schema: TableSchema, *, job_id: str, op: str) -> None:
        self.schema, self._job_id, self._op = schema, job_id, op
        self._mark = f"{_text(JOB_PROPERTY)}: {_text(writer_mark(job_id, op))}"
        self._writers = [(item.name, _member_writer(item)) for item in schema.fields]
        self._properties = 4 + len(schema.fields)  # at most: the keys, the writer's mark and KEY_PROPERTY

    def encode(self, values: Mapping[str, Any], *, key: str) -> tuple[Encoded, bool]:
        """Return a row's encoded entity, and whether Table Storage would refuse it for its size."""
        row_key = row_key_of(key)
        partition_key = partition_of(row_key)
        members = [f'"PartitionKey": "{partition_key}"', f'"RowKey": {_text(row_key)}', self._mark]
        if row_key != key:
            members.append(f"{_text(KEY_PROPERTY)}: {_text(key)}")
        for name, write in self._writers:
            value = values.get(name)
            if value is not None:
                members.append(write(value))
        body = "{" + ", ".join(members) + "}"
        # The JSON text is at least as long as the names and strings it holds: short text is never too large
        # (the bound too_large checks first); longer text is measured as too_large measures an entity.
        if (
            len(body) > MAX_PROPERTY_UNITS // 2
            or 4 + 16 * self._properties + 4 * len(body) > MAX_ENTITY_BYTES
        ):
            entity = row_entity(self.schema, values, key=key, job_id=self._job_id, op=self._op)
            return Encoded(partition_key, row_key, body), too_large(entity)
        return Encoded(partition_key, row_key, body), False


def _member_writer(item: Field) -> Callable[[Any], str]:
    """Return the writer of one field's `"name": value` JSON member, as entity_json writes it."""
    name = _text(item.property_name)
    annotation = _text(item.property_name + "@odata.type")

    def slow(value: Any) -> str:  # the entity_json of the value row_entity stores
        return entity_json({item.property_name: _stored(item, value)})[1:-1]

    if item.type in ("integer", "year"):
        return lambda value: (
            f'{name}: "{value}", {annotation}: "Edm.Int64"' if type(value) is int else slow(value)
        )
    if item.type == "number":
        return lambda value: (
            f'{name}: {value!r}, {annotation}: "Edm.Double"'
            if type(value) is float and math.isfinite(value)
            else slow(value)
        )
    if item.type == "boolean":
        return lambda value: f"{name}: {'true' if value else 'false'}" if type(value) is bool else slow(value)
    if item.type in ("date", "time", "datetime"):
        return lambda value: (
            f"{name}: {_text(value.isoformat())}" if isinstance(value, date | time) else slow(value)
        )
    return lambda value: f"{name}: {_text(value)}" if type(value) is str else slow(value)


def writer_mark(job_id: str, op: str) -> str:
    """Return the JOB_PROPERTY value of a row that import job_id inserted ("i") or updated ("u")."""
    return job_id if op == "i" else f"{job_id}:{op}"


def written_by(entity: Mapping[str, Any]) -> tuple[str, str]:
    """Return the import that last wrote a stored row and what it did ("i" inserted, "u" updated)."""
    job_id, _, op = str(entity.get(JOB_PROPERTY) or "").partition(":")
    return job_id, op or str(entity.get(OP_PROPERTY) or "i")


def _stored(item: Field, value: Any) -> Any:
    if item.type in ("integer", "year"):
        return EntityProperty(value, EdmType.INT64)
    if item.type == "number":
        return value if math.isfinite(value) else EntityProperty(_special(value), EdmType.DOUBLE)
    if isinstance(value, date | time | datetime):
        return value.isoformat()
    return value


def _special(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def entity_bytes(entity: Mapping[str, Any]) -> int:
    """Estimate an entity's stored size the way Table Storage counts it (strings as UTF-16)."""
    size = 4
    for name, value in entity.items():
        size += 8 + 2 * len(name)
        if isinstance(value, str):
            size += 4 + (
                2 * len(value) if value.isascii() else len(value.encode("utf-16-le", "surrogatepass"))
            )
        else:
            size += 8
    return size


MAX_PROPERTY_UNITS: Final = 32_767  # a string property holds 64 KiB of UTF-16


def too_large(entity: Mapping[str, Any]) -> bool:
    """Tell whether Table Storage would refuse an entity for its size (the whole, or one string)."""
    chars = 0
    for value in entity.values():
        if type(value) is str:
            chars += len(value)
    # A bound first, without encoding anything: a character takes at most 4 bytes in UTF-16 and any
    # other value 8, so almost every row is settled here at a third of the cost of measuring it.
    if (
        chars <= MAX_PROPERTY_UNITS // 2
        and 4 + 16 * len(entity) + 4 * (sum(map(len, entity)) + chars) <= MAX_ENTITY_BYTES
    ):
        return False
    if entity_bytes(entity) > MAX_ENTITY_BYTES:
        return True
    return any(
        isinstance(value, str)
        and len(value) > MAX_PROPERTY_UNITS // 2
        and utf16_units(value) > MAX_PROPERTY_UNITS
        for value in entity.values()
    )


def utf16_units(text: str) -> int:
    """Return the length of text as Table Storage counts it: UTF-16 code units (an emoji takes two)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le", "surrogatepass")) // 2


def same_values(schema: TableSchema, stored: Mapping[str, Any], fresh: Mapping[str, Any]) -> bool:
    """Tell whether a stored entity already holds exactly a new entity's field values."""
    for item in schema.fields:
        name = item.property_name
        if _plain(stored.get(name)) != _plain(fresh.get(name)):
            return False
    return True


def _plain(value: Any) -> Any:
    """Unwrap a stored value; NaN and the infinities become their text (JSON has no such numbers)."""
    if isinstance(value, EntityProperty):
        value = value.value
    if isinstance(value, float) and not math.isfinite(value):
        return _special(value)
    return value


def row_view(schema: TableSchema, entity: Mapping[str, Any]) -> dict[str, Any]:
    """Return the API view of a stored row: {key, values: {field: value}} typed per the schema."""
    values: dict[str, Any] = {}
    for item in schema.fields:
        values[item.name] = _plain(entity.get(item.property_name))
    return {"key": entity_key(entity), "values": values}


def entity_key(entity: Mapping[str, Any]) -> str:
    """Return the API key of a stored row."""
    stored = entity.get(KEY_PROPERTY)
    if isinstance(stored, str):
        return stored
    return re.sub(r"%([0-9A-F]{2})", lambda match: chr(int(match.group(1), 16)), str(entity["RowKey"]))


def export_cells(schema: TableSchema, entity: Mapping[str, Any], *, safe: bool = True) -> list[str]:
    """Return a stored row as CSV cells that import again to the same values.

    With ``safe``, text cells a spreadsheet would run as a formula get a ``'`` in front (CSV injection);
    numbers, dates and booleans cannot hold a formula and are written as they are.
    """
    missing = schema.missing_values[0] if schema.missing_values else ""
    cells = []
    for item in schema.fields:
        value = _plain(entity.get(item.property_name))
        text = cell_text(item, value, missing=missing)
        cells.append(safe_cell(text) if safe and value is not None and item.type in _TEXT_TYPES else text)
    return cells


def export_header(schema: TableSchema, *, safe: bool = True) -> list[str]:
    """Return the export's header row: the field names, as written in the schema."""
    return [safe_cell(item.name) if safe else item.name for item in schema.fields]


def cell_text(item: Field, value: Any, *, missing: str = "") -> str:
    """Write a typed value as text the field reads back to the same value (its format included)."""
    if value is None:
        return missing
    if item.type == "boolean":
        return item.true_values[0] if value else item.false_values[0]
    if item.type == "number":
        return _number_text(item, value)
    if item.type == "year":
        return f"{value:04d}"  # years are four digits, 0999 included
    if item.type == "integer":
        return str(value)
    if item.type in ("date", "datetime", "time") and item.format not in ("default", "any"):
        return _formatted(_parsed(item, value), item.format.removeprefix("fmt:"))
    return str(value)


def _formatted(moment: date | time | datetime, pattern: str) -> str:
    """strftime, but with %Y always four digits (glibc writes year 999 as "999", strptime wants "0999")."""

    def directive(match: re.Match[str]) -> str:
        code = match.group(1)
        if code == "Y" and isinstance(moment, date):
            return f"{moment.year:04d}"
        return moment.strftime("%" + code)

    return re.sub(r"%(.)", directive, pattern)


def _number_text(item: Field, value: Any) -> str:
    if isinstance(value, str):  # NaN / Infinity
        return {"Infinity": "INF", "-Infinity": "-INF"}.get(value, value)
    text = repr(float(value))
    return text.replace(".", item.decimal_char) if item.decimal_char != "." else text


def _parsed(item: Field, text: str) -> date | time | datetime:
    if item.type == "date":
        return date.fromisoformat(text)
    if item.type == "time":
        return time.fromisoformat(text)
    return datetime.fromisoformat(text)


def safe_cell(text: str) -> str:
    """Neutralise a cell a spreadsheet would run as a formula (CSV injection): prefix it with '."""
    if text.startswith(_INJECTION_STARTS):
        return "'" + text
    return text


def unsafe_cell(text: str) -> str:
    """Undo safe_cell: drop the ' it put before a cell that would run as a formula."""
    if text.startswith("'") and text[1:].startswith(_INJECTION_STARTS):
        return text[1:]
    return text


def group_by_partition(entities: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group entities by PartitionKey, keeping their order (a transaction holds one partition)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entity in entities:
        groups.setdefault(entity["PartitionKey"], []).append(entity)
    return groups
