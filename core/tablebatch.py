"""Entity group transactions (`$batch`) built by hand and sent through a TableClient's own pipeline.

The SDK's `TableClient.submit_transaction` builds every operation as a full HTTP request object and the
multipart body through the `email` package: about 0.5 ms of CPU per entity, which made it the bottleneck
of an import (a 100-entity transaction cost more CPU here than Azurite spent storing it). This module
writes the same multipart body as text, about 10x cheaper, and sends it through the client's pipeline,
so authentication, retries, the API version and logging are the SDK's own. Entities are serialised as
the SDK does (`entity_json`; anything unusual by the SDK's own `_add_entity_properties`, pinned in
requirements.txt), so the stored property types are the same.

Only what Loadbay batches is supported: insert (`create`) and insert-or-replace (`upsert`). An entity is a
mapping, or `Encoded`: its keys and the JSON `entity_json` wrote for it earlier (an import encodes its rows
once, while validating, and its apply sends that text as it is).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as _text  # a str as json.dumps(ensure_ascii=False) writes it
from typing import Any, Final
from urllib.parse import quote

from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest
from azure.data.tables import EdmType, EntityProperty, TableClient
from azure.data.tables._serialize import _add_entity_properties

MAX_OPERATIONS: Final = 100  # Table Storage's limit for one transaction
MAX_BODY_BYTES: Final = 4 * 1024 * 1024  # ... and for its request body
OPERATIONS: Final = ("create", "upsert")
_STATUS = re.compile(rb"^HTTP/1\.1 (\d{3})", re.MULTILINE)
_ERROR_CODE = re.compile(rb'"code"\s*:\s*"([^"]*)"')


@dataclass(frozen=True, slots=True)
class Encoded:
    """An entity serialised ahead of time: its keys and its `entity_json` text (see `entity_from_json`)."""

    partition_key: str
    row_key: str
    body: str


Entity = Mapping[str, Any] | Encoded


class BatchTooLarge(ValueError):
    """The operations do not fit in one transaction's 4 MiB body: send them in smaller groups."""


class BatchRejected(Exception):
    """The service refused the transaction: none of its operations took effect.

    `status` and `code` are those of the failed operation (409 `EntityAlreadyExists` for an insert of a
    key that exists, 400 for an entity the service will not store, ...).
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"the transaction was refused: {status} {code}: {detail[:300]}")
        self.status, self.code = status, code


def submit_batch(table: TableClient, operations: Sequence[tuple[str, Entity]]) -> None:
    """Apply up to 100 operations on entities of one partition, all or none.

    Raises BatchRejected when the service refuses an operation (nothing is written), BatchTooLarge
    before sending a body over 4 MiB, and the SDK's AzureError for a failure worth trying again (a
    reset connection, a 5xx), like the SDK's own calls.
    """
    if not 0 < len(operations) <= MAX_OPERATIONS:
        raise ValueError(f"a transaction takes 1 to {MAX_OPERATIONS} operations, got {len(operations)}")
    if len({_keys(entity)[0] for _, entity in operations}) != 1:
        raise ValueError("the entities of one transaction must share a PartitionKey")
    base = f"{table.scheme}://{table._primary_hostname}"  # the SDK's own base URL
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"]
    for operation, entity in operations:
        parts.append(_part(changeset, base, table.table_name, operation, entity))
    parts.append(f"--{changeset}--\r\n--{batch}--\r\n")
    content = "".join(parts).encode("utf-8")
    if len(content) > MAX_BODY_BYTES:
        raise BatchTooLarge(f"{len(operations)} operations take {len(content):,} bytes, over 4 MiB")
    request = HttpRequest(
        "POST",
        f"{base}/$batch",
        headers={
            "Content-Type": f"multipart/mixed; boundary={batch}",
            "Accept": "application/json",
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "x-ms-version": table.api_version,
        },
        content=content,
    )
    # stream=True: the pipeline would otherwise try to deserialise the multipart answer, and fail.
    response = table._client.send_request(request, stream=True)  # the SDK's pipeline
    response.read()
    if response.status_code != 202:
        response.raise_for_status()  # the SDK's HttpResponseError, with the service's error
        raise AzureError(f"the transaction was answered {response.status_code}, not 202")
    _check(response.content, len(operations))


def entity_json(entity: Mapping[str, Any]) -> str:
    """Serialise an entity as the SDK would, minus its `Edm.String` annotations (strings are the default).

    Strings, booleans, finite doubles and Int64 values (every property of a Loadbay row but NaN and the
    infinities) are written as JSON text directly, at half the cost of a dict for `json.dumps`; anything
    else goes through the SDK's own conversion. Half the properties of a text-heavy row were
    `@odata.type` annotations the service had to parse for nothing.
    """
    members = []
    for name, value in entity.items():
        kind = type(value)
        if kind is str:
            members.append(f"{_text(name)}: {_text(value)}")
        elif kind is bool:
            members.append(f"{_text(name)}: {'true' if value else 'false'}")
        elif kind is float and math.isfinite(value):
            members.append(f'{_text(name)}: {value!r}, {_text(name + "@odata.type")}: "Edm.Double"')
        elif kind is EntityProperty and value.edm_type is EdmType.INT64:
            members.append(
                f'{_text(name)}: "{_int64(value.value)}", {_text(name + "@odata.type")}: "Edm.Int64"'
            )
        elif value is not None:
            converted = _add_entity_properties({name: value})
            members += (
                f"{_text(key)}: {json.dumps(item, ensure_ascii=False)}" for key, item in converted.items()
            )
    return "{" + ", ".join(members) + "}"


def entity_from_json(text: str) -> dict[str, Any]:
    """Read an entity back from `entity_json`'s text, with the types the SDK gives it: an Int64 or a NaN or
    infinite double as an EntityProperty, anything else as its plain value."""
    raw = json.loads(text)
    entity: dict[str, Any] = {}
    for name, value in raw.items():
        if name.endswith("@odata.type"):
            continue
        kind = raw.get(name + "@odata.type")
        if kind == "Edm.Int64":
            value = EntityProperty(int(value), EdmType.INT64)
        elif kind == "Edm.Double":
            value = float(value) if isinstance(value, int | float) else EntityProperty(value, EdmType.DOUBLE)
        elif kind is not None:
            raise ValueError(f"entity_json does not write {kind} values (property {name!r})")
        entity[name] = value
    return entity


def _keys(entity: Entity) -> tuple[str, str]:
    if isinstance(entity, Encoded):
        return entity.partition_key, entity.row_key
    return entity["PartitionKey"], entity["RowKey"]


def _int64(value: Any) -> str:
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise TypeError(f"{value} does not fit in an Edm.Int64")
    return str(number)


def _part(changeset: str, base: str, table: str, operation: str, entity: Entity) -> str:
    body = entity.body if isinstance(entity, Encoded) else entity_json(entity)
    if operation == "create":
        line = f"POST {base}/{table} HTTP/1.1"
    elif operation == "upsert":  # insert or replace: no If-Match header
        partition_key, row_key = _keys(entity)
        keys = f"PartitionKey='{_key(partition_key)}',RowKey='{_key(row_key)}'"
        line = f"PUT {base}/{table}({keys}) HTTP/1.1"
    else:
        raise ValueError(f"unsupported operation {operation!r}; use one of {OPERATIONS}")
    return (
        f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"{line}\r\nContent-Type: application/json\r\nAccept: application/json;odata=minimalmetadata\r\n"
        f"Prefer: return-no-content\r\nDataServiceVersion: 3.0\r\n\r\n{body}\r\n"
    )


def _key(value: str) -> str:
    """Quote a key for the URL of one operation: single quotes doubled (OData), then percent-encoded."""
    return quote(value.replace("'", "''"), safe="")


def _check(content: bytes, expected: int) -> None:
    """Read the changeset's answers: one 2xx per operation, or the one failure that undid them all."""
    statuses = [int(status) for status in _STATUS.findall(content)]
    failed = [status for status in statuses if status >= 300]
    if failed:
        code = _ERROR_CODE.search(content)
        text = content.decode("utf-8", "replace")
        if failed[0] >= 500 or failed[0] == 408:
            raise AzureError(f"the transaction failed on the service's side ({failed[0]}): {text[:300]}")
        raise BatchRejected(failed[0], code.group(1).decode() if code else "", text)
    if len(statuses) != expected:
        raise AzureError(f"the transaction was answered for {len(statuses)} of {expected} operations")
