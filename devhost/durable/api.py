"""The Durable client's HTTP endpoints (`rpcBaseUrl` and the management URLs), served on devhost's server.

The Python SDK's DurableOrchestrationClient calls these: it double-encodes start and raise-event
bodies (a JSON string holding the JSON text), and reads the status codes the extension answers.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode

from devhost.durable.history import format_time, parse_time, status_history
from devhost.durable.instance import (
    EVENT_RAISED,
    RESUME,
    SUSPEND,
    TERMINAL,
    TERMINATE,
    InstanceState,
    instance_id_problem,
)
from devhost.durable.replay import ENTITIES_UNSUPPORTED
from devhost.durable.rows import load_instance, state_from_row
from devhost.durable.store import MAX_BATCH, STATE_KEY, Operation, if_unchanged

if TYPE_CHECKING:
    from devhost.durable.engine import Engine
    from devhost.http import HttpServer

logger = logging.getLogger("devhost")

WEBHOOK_PATH = "/runtime/webhooks/durabletask"
INSTANCE_PLACEHOLDER = "INSTANCEID"
_ACTIVE = ("Pending", "Running", "Suspended", "ContinuedAsNew")
_PURGE_ATTEMPTS = 3


def management_urls(base_url: str, hub: str, connection: str, instance_id: str) -> dict[str, str]:
    """The extension's instance management URLs (the status, event, terminate, ... webhooks)."""
    root = f"{base_url}{WEBHOOK_PATH}/instances/{instance_id}"
    query = f"taskHub={hub}&connection={connection}"
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{root}?{query}",
        "sendEventPostUri": f"{root}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{root}/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{root}/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{root}?{query}",
        "restartPostUri": f"{root}/restart?{query}",
        "suspendPostUri": f"{root}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{root}/resume?reason={{text}}&{query}",
    }


def client_binding_json(base_url: str, hub: str, connection: str) -> str:
    """The `durableClient` binding's value: the JSON the SDK's DurableOrchestrationClient is built from."""
    webhooks = f"{base_url}{WEBHOOK_PATH}"
    query = f"taskHub={hub}&connection={connection}"
    creation = {
        "createNewInstancePostUri": f"{webhooks}/orchestrators/{{functionName}}[/{{instanceId}}]?{query}",
        "createAndWaitOnNewInstancePostUri": (
            f"{webhooks}/orchestrators/{{functionName}}[/{{instanceId}}]"
            f"?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{query}"
        ),
    }
    return json.dumps(
        {
            "taskHubName": hub,
            "creationUrls": creation,
            "managementUrls": management_urls(base_url, hub, connection, INSTANCE_PLACEHOLDER),
            "baseUrl": webhooks,
            "requiredQueryStringParameters": query,
            "rpcBaseUrl": f"{webhooks}/",
        }
    )


def _json_value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _body_json_text(body: bytes) -> str | None:
    # The SDK posts json=df_dumps(value): a JSON string whose content is the JSON text. A plain HTTP
    # caller posts the JSON itself. Either way the result is the value's JSON text.
    if not body.strip():
        return None
    value = json.loads(body)
    return value if isinstance(value, str) else json.dumps(value)


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    return default if value is None else value.lower() == "true"


def _problem(status: int, message: str) -> web.Response:
    return web.json_response(message, status=status)


class DurableApi:
    """Serve the task hub's client endpoints under /runtime/webhooks/durabletask."""

    def __init__(self, engine: Engine, server: HttpServer, connection: str) -> None:
        self.engine = engine
        self.server = server
        self.connection = connection
        base = WEBHOOK_PATH
        routes = [
            ("POST", f"{base}/orchestrators/{{name}}", self.start),
            ("POST", f"{base}/orchestrators/{{name}}/{{instance_id}}", self.start),
            ("GET", f"{base}/instances", self.list_instances),
            ("GET", f"{base}/instances/", self.list_instances),
            ("DELETE", f"{base}/instances", self.purge_many),
            ("DELETE", f"{base}/instances/", self.purge_many),
            ("GET", f"{base}/instances/{{instance_id}}", self.status),
            ("DELETE", f"{base}/instances/{{instance_id}}", self.purge_one),
            ("POST", f"{base}/instances/{{instance_id}}/raiseEvent/{{event}}", self.raise_event),
            ("POST", f"{base}/instances/{{instance_id}}/terminate", self.terminate),
            ("POST", f"{base}/instances/{{instance_id}}/suspend", self.suspend),
            ("POST", f"{base}/instances/{{instance_id}}/resume", self.resume),
            ("POST", f"{base}/instances/{{instance_id}}/restart", self.restart),
            ("POST", f"{base}/instances/{{instance_id}}/rewind", self.rewind),
            ("*", f"{base}/entities/{{tail:.*}}", self.entities),
        ]
        for method, path, handler in routes:
            server.add_route(method, path, handler)

    @property
    def hub(self) -> str:
        """The task hub name."""
        return self.engine.options.hub_name

    def check_status_payload(self, request: web.Request, instance_id: str) -> dict[str, str]:
        """The management URLs of one instance, on the origin the request came to."""
        origin = f"{request.scheme}://{request.host}"
        return management_urls(origin, self.hub, self.connection, instance_id)

    async def start(self, request: web.Request) -> web.StreamResponse:
        """Start an orchestration (409 when an instance with that id is pending, running or suspended)."""
        name = request.match_info["name"]
        instance_id = request.match_info.get("instance_id") or uuid.uuid4().hex
        if name not in self.engine.orchestrators:
            message = (
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                "Additional info: devhost loaded no orchestrator by that name."
            )
            return web.json_response({"ExceptionMessage": message}, status=400)
        problem = instance_id_problem(instance_id)
        if problem is not None:
            return web.json_response({"ExceptionMessage": problem}, status=400)
        try:
            input_text = _body_json_text(await request.read())
        except ValueError:
            return web.json_response(
                {"ExceptionMessage": "Only application/json request content is supported"}, status=400
            )
        created = await self.engine.create_instance(
            instance_id, name, input_text, request.query.get("version", "")
        )
        if created.conflict_status is not None:
            return _problem(
                409, f"An Orchestration instance with the status {created.conflict_status} already exists."
            )
        payload = self.check_status_payload(request, instance_id)
        headers = {"Location": payload["statusQueryGetUri"], "Retry-After": "1"}
        return web.json_response(payload, status=202, headers=headers)

    async def _state(self, instance_id: str) -> InstanceState | None:
        row = await self.engine.store.read_state(instance_id)
        return None if row is None else await state_from_row(self.engine.store, row)

    def _status_json(self, state: InstanceState, *, show_input: bool) -> dict[str, Any]:
        return {
            "name": state.name,
            "instanceId": state.instance_id,
            "runtimeStatus": state.status,
            "input": state.input if show_input else None,
            "customStatus": _json_value(state.custom_status),
            "output": _json_value(state.output),
            "createdTime": format_time(state.created),
            "lastUpdatedTime": format_time(state.updated),
        }

    async def status(self, request: web.Request) -> web.StreamResponse:
        """An instance's status; history with showHistory=true (results with showHistoryOutput=true)."""
        instance_id = request.match_info["instance_id"]
        state = await self._state(instance_id)
        if state is None:
            return web.Response(status=404)
        body = self._status_json(state, show_input=_flag(request, "showInput", default=True))
        if _flag(request, "showHistory"):
            loaded = await load_instance(self.engine.store, instance_id)
            events = loaded.state.events if loaded.state is not None else []
            body["historyEvents"] = status_history(events, with_output=_flag(request, "showHistoryOutput"))
            body["history"] = body["historyEvents"]
        return web.json_response(body, status=202 if state.status in _ACTIVE else 200)

    async def _matching(self, request: web.Request) -> list[InstanceState]:
        query = request.query
        earliest = parse_time(query["createdTimeFrom"]) if query.get("createdTimeFrom") else None
        latest = parse_time(query["createdTimeTo"]) if query.get("createdTimeTo") else None
        statuses = {item for item in query.get("runtimeStatus", "").split(",") if item}
        prefix = query.get("instanceIdPrefix", "")
        matching = []
        for row in await self.engine.store.list_states():
            if not str(row["PartitionKey"]).startswith(prefix):
                continue
            state = await state_from_row(self.engine.store, row)
            if _in_range(state.created, earliest, latest) and (not statuses or state.status in statuses):
                matching.append(state)
        return matching

    async def list_instances(self, request: web.Request) -> web.StreamResponse:
        """Statuses of every instance matching createdTimeFrom/To, runtimeStatus and instanceIdPrefix."""
        show_input = _flag(request, "showInput", default=True)
        states = sorted(await self._matching(request), key=lambda state: state.created)
        return web.json_response([self._status_json(state, show_input=show_input) for state in states])

    async def purge_one(self, request: web.Request) -> web.StreamResponse:
        """Delete a finished instance's state and history (404 when there is no such instance)."""
        instance_id = request.match_info["instance_id"]
        row = await self.engine.store.read_state(instance_id)
        if row is None:
            return web.json_response({"instancesDeleted": 0}, status=404)
        deleted = await self._purge(instance_id, row)
        return web.json_response({"instancesDeleted": deleted})

    async def purge_many(self, request: web.Request) -> web.StreamResponse:
        """Delete every finished instance matching the filters."""
        deleted = 0
        for state in await self._matching(request):
            if state.terminal:
                deleted += await self._purge(state.instance_id)
        return web.json_response({"instancesDeleted": deleted}, status=200 if deleted else 404)

    async def _purge(self, instance_id: str, row: TableEntity | None = None) -> int:
        # Only finished instances with no follow-up pending (parent notification, reconcile) are purged.
        # Each batch of deletes touches the instance row ETag-conditionally, chaining the ETag, and the
        # instance row goes last: a restart or a step in between stops the purge (it is tried again).
        store = self.engine.store
        for _ in range(_PURGE_ATTEMPTS):
            if row is None:
                row = await store.read_state(instance_id)
            if row is None or not _purgeable(row):
                return 0
            blobs = await store.list_blobs(instance_id)
            etag = str(row.metadata["etag"])
            rows = await store.load_partition(instance_id)
            keys = [str(item["RowKey"]) for item in rows if item["RowKey"] != STATE_KEY]
            touch = {"PartitionKey": instance_id, "RowKey": STATE_KEY}
            try:
                for start in range(0, len(keys), MAX_BATCH - 1):
                    deletes: list[Operation] = [
                        ("delete", {"PartitionKey": instance_id, "RowKey": key})
                        for key in keys[start : start + MAX_BATCH - 1]
                    ]
                    results = await store.submit(
                        [("update", touch, if_unchanged(etag, UpdateMode.MERGE)), *deletes]
                    )
                    etag = str(results[0]["etag"])
                await store.table.delete_entity(
                    instance_id, STATE_KEY, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            except (TableTransactionError, ResourceModifiedError, ResourceNotFoundError) as error:
                logger.debug("Purge of '%s' raced with a change (%s); trying again", instance_id, error)
                row = None
                continue
            await store.delete_blob_names(blobs)
            self.engine.runners.pop(instance_id, None)
            return 1
        return 0

    async def _send(self, request: web.Request, kind: str, body: Mapping[str, Any]) -> web.StreamResponse:
        instance_id = request.match_info["instance_id"]
        row = await self.engine.store.read_state(instance_id)
        if row is None:
            return _problem(404, f"No instance with ID '{instance_id}' found.")
        if str(row.get("RuntimeStatus")) in TERMINAL:
            return _problem(
                410, f"Instance with ID '{instance_id}' is gone: it is {row.get('RuntimeStatus')}."
            )
        # Stamped with the run it is meant for: a restart of the id in between makes the new run drop it.
        execution_id = str(row.get("ExecutionId") or "")
        generation = str(row.get("Generation") or "")
        await self.engine.send(instance_id, kind, execution_id, body, generation)
        return web.Response(status=202)

    async def raise_event(self, request: web.Request) -> web.StreamResponse:
        """Deliver an external event."""
        try:
            data = _body_json_text(await request.read())
        except ValueError:
            return _problem(400, "Only application/json request content is supported")
        return await self._send(
            request, EVENT_RAISED, {"Name": request.match_info["event"], "Input": data or "null"}
        )

    async def terminate(self, request: web.Request) -> web.StreamResponse:
        """Terminate an instance."""
        return await self._send(request, TERMINATE, {"Reason": request.query.get("reason", "")})

    async def suspend(self, request: web.Request) -> web.StreamResponse:
        """Suspend an instance (messages wait until it resumes)."""
        return await self._send(request, SUSPEND, {"Reason": request.query.get("reason", "")})

    async def resume(self, request: web.Request) -> web.StreamResponse:
        """Resume a suspended instance."""
        return await self._send(request, RESUME, {"Reason": request.query.get("reason", "")})

    async def restart(self, request: web.Request) -> web.StreamResponse:
        """Start the instance's orchestrator again with its original input (new id unless asked not to)."""
        state = await self._state(request.match_info["instance_id"])
        if state is None:
            return _problem(404, f"No instance with ID '{request.match_info['instance_id']}' found.")
        new_id = (
            uuid.uuid4().hex
            if _flag(request, "restartWithNewInstanceId", default=True)
            else state.instance_id
        )
        created = await self.engine.create_instance(new_id, state.name, state.input, state.version)
        if created.conflict_status is not None:
            return _problem(
                409, f"An Orchestration instance with the status {created.conflict_status} already exists."
            )
        return web.json_response(new_id, status=202)

    async def rewind(self, request: web.Request) -> web.StreamResponse:
        """Rewind is not supported."""
        return _problem(501, "rewind is not supported by devhost")

    async def entities(self, request: web.Request) -> web.StreamResponse:
        """Entity operations are not supported."""
        return _problem(501, ENTITIES_UNSUPPORTED)


def _purgeable(row: Mapping[str, Any]) -> bool:
    finished = str(row.get("RuntimeStatus")) in TERMINAL
    return finished and not row.get("NotifyParent") and not row.get("Reconcile")


def _in_range(moment: datetime, earliest: datetime | None, latest: datetime | None) -> bool:
    return (earliest is None or moment >= earliest) and (latest is None or moment <= latest)
