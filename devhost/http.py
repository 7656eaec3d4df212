"""HTTP triggers: an aiohttp server that routes, authorizes and converts requests like the Functions host."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from devhost.bindings import OutValue
from devhost.config import ConfigError, DevhostSettings
from devhost.invoker import RuntimeFunction
from devhost.routes import Router, RouteTemplateError
from devhost.runtime import Runtime, TriggerKind

logger = logging.getLogger("devhost")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")
_AUTH_LEVELS = ("anonymous", "function", "admin")
# aiohttp computes these itself; copying the function's values could contradict the body actually sent.
_SKIPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
_GENERIC_500 = "Internal Server Error"


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""


class HttpServer:
    """The one HTTP server of a devhost: system routes first, then every HTTP trigger through a catch-all."""

    def __init__(self, host: str, port: int, *, shutdown_timeout: float) -> None:
        self.host = host
        self.port = port
        self.app = web.Application()
        self._fallback: Handler | None = None
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     shutdown_timeout=shutdown_timeout)  # fmt: skip
        self._site: web.TCPSite | None = None

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve a system endpoint (e.g. the Durable client endpoints) ahead of the function routes."""
        self.app.router.add_route(method, path, handler)

    def set_fallback(self, handler: Handler) -> None:
        """Set the handler for everything the system routes do not answer."""
        self._fallback = handler

    async def start(self) -> None:
        """Listen on host:port (port 0 picks a free one)."""
        self.app.router.add_route("GET", "/admin/host/status", _host_status)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port)
        await self._site.start()
        self.port = self._site.port

    @property
    def base_url(self) -> str:
        """The server's URL, as printed at start-up."""
        return f"http://{self.host}:{self.port}"

    async def stop_listening(self) -> None:
        """Stop accepting connections; requests already in progress continue."""
        if self._site is not None:
            await self._site.stop()

    async def close(self) -> None:
        """Wait for in-flight requests (up to the shutdown timeout), then close everything."""
        if self._site is not None:
            await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if self._fallback is None:
            return web.Response(status=404)
        return await self._fallback(request)


async def _host_status(request: web.Request) -> web.StreamResponse:
    return web.json_response({"state": "Running", "runtime": "devhost"})


@dataclass(frozen=True)
class HttpFunction:
    """An HTTP-triggered function with its route, methods and auth level."""

    function: RuntimeFunction
    route: str
    methods: tuple[str, ...] | None
    auth_level: str
    response_binding: str


def join_values(pairs: MultiMapping[str]) -> dict[str, str]:
    """Collapse repeated keys into one comma-joined value, as the host passes headers and query to workers."""
    joined: dict[str, list[str]] = {}
    for key, value in pairs.items():
        joined.setdefault(key, []).append(value)
    return {key: ",".join(values) for key, values in joined.items()}


def authorized(level: str, supplied: str | None, settings: DevhostSettings) -> bool:
    """Check a key: function level takes the function or master key, admin level only the master key."""
    if level == "anonymous":
        return True
    accepted = [settings.master_key] if level == "admin" else [settings.function_key, settings.master_key]
    if not supplied:
        return False
    return any(key is not None and hmac.compare_digest(key.encode(), supplied.encode()) for key in accepted)


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the request body, refusing more than `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def to_web_response(value: Any) -> web.Response:
    """Convert what an HTTP function returned into an aiohttp response (as the worker's converter does)."""
    if isinstance(value, str):
        return web.Response(
            status=200, body=value.encode("utf-8"), content_type="text/plain", charset="utf-8"
        )
    if not isinstance(value, func.HttpResponse):
        raise TypeError(f"an HTTP function must return func.HttpResponse or str, not {type(value).__name__}")
    headers: CIMultiDict[str] = CIMultiDict()
    for name, header in value.headers.items():
        if name.lower() not in _SKIPPED_RESPONSE_HEADERS:
            headers.add(name, header)
    if "content-type" not in headers:
        mimetype = value.mimetype
        headers["Content-Type"] = (
            f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
        )
    return web.Response(status=value.status_code, body=value.get_body(), headers=headers)


class HttpTriggerKind(TriggerKind):
    """Serve `httpTrigger` functions on the host's HTTP server."""

    kind = "http"
    trigger_types = frozenset({"httpTrigger"})
    served_bindings = frozenset({"http"})

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.router: Router[HttpFunction] = Router()
        self.prefix = runtime.host_config.route_prefix

    def add(self, function: RuntimeFunction) -> None:
        trigger = function.spec.trigger
        route = str(trigger.get("route") or function.name).strip("/")
        template = f"{self.prefix}/{route}" if self.prefix else route
        methods = trigger.get("methods")
        level = str(trigger.get("authLevel") or "function").lower()
        if level not in _AUTH_LEVELS:
            raise ConfigError(f"authLevel {level!r} is not one of {', '.join(_AUTH_LEVELS)}")
        outputs = [binding.name for binding in function.spec.bindings if binding.type == "http"]
        entry = HttpFunction(
            function=function,
            route=template,
            methods=tuple(str(method).upper() for method in methods) if methods else None,
            auth_level=level,
            response_binding=outputs[0] if outputs else "$return",
        )
        try:
            self.router.add(template, entry.methods, entry)
        except RouteTemplateError as error:
            raise ConfigError(f"route {route!r}: {error}") from None
        super().add(function)

    def describe(self, function: RuntimeFunction) -> str:
        entry = next(route.target for route in self.router.routes if route.target.function is function)
        methods = ",".join(entry.methods or ALL_METHODS)
        if self.runtime.http is None:
            return f"{function.name}: [{methods}] /{entry.route} (HTTP is not served in this run)"
        return f"{function.name}: [{methods}] {self.runtime.http.base_url}/{entry.route}"

    async def start(self) -> None:
        if self.runtime.http is None:
            return
        self.runtime.http.set_fallback(self.handle)
        settings = self.runtime.settings
        protected = [
            route.target.function.name
            for route in self.router.routes
            if route.target.auth_level != "anonymous"
        ]
        if protected and not (settings.function_key or settings.master_key):
            logger.warning(
                "HTTP functions %s need a key, but neither DEVHOST_FUNCTION_KEY nor DEVHOST_MASTER_KEY "
                "is set: they will answer 401",
                ", ".join(protected),
            )

    async def stop(self, deadline: float) -> None:
        # The server (owned by the host) stops listening and waits for in-flight requests itself.
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Route one request to its function and convert the result."""
        found = self.router.match(request.method, request.path)
        if found is None:
            return web.Response(status=404)
        route, route_params = found
        entry = route.target
        supplied = request.query.get("code") or request.headers.get("x-functions-key")
        if not authorized(entry.auth_level, supplied, self.runtime.settings):
            return web.Response(status=401)
        try:
            body = await read_body(request, self.runtime.settings.max_body_bytes)
        except BodyTooLarge:
            limit = self.runtime.settings.max_body_bytes
            return web.Response(status=413, text=f"Request body is larger than the limit of {limit} bytes.")
        return await self._invoke(entry, request, route_params, body)

    async def _invoke(
        self, entry: HttpFunction, request: web.Request, route_params: Mapping[str, str], body: bytes
    ) -> web.StreamResponse:
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=join_values(request.headers),
            params=join_values(request.query),
            route_params=dict(route_params),
            body=body,
        )
        arguments: dict[str, Any] = {entry.function.spec.trigger.name: http_request}
        response_out: OutValue[Any] | None = None
        if entry.response_binding != "$return":
            response_out = OutValue()
            arguments[entry.response_binding] = response_out
        result = await self.runtime.invoker.invoke(
            entry.function, self.kind, arguments,
            detail=[f"{request.method} {request.path}"],
            trace_parent=request.headers.get("traceparent"),
        )  # fmt: skip
        if not result.succeeded:
            return web.Response(status=500, text=_GENERIC_500)
        value = response_out.get() if response_out is not None else result.value
        try:
            return to_web_response(value)
        except TypeError:
            logger.exception("'%s' returned something that is not an HTTP response", entry.function.name)
            return web.Response(status=500, text=_GENERIC_500)
