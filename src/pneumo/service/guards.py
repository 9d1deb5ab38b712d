"""Request guards that run before any body is read: the Host header must name this server (DNS rebinding),
a state-changing request from a browser must come from this server's own page or a configured origin
(cross-site form posts), and uploads are refused with 429 once the worker queue is full.

Each is a plain ASGI middleware answering in the service's JSON error shape.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from pneumo.service.errors import error_response

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(value: str) -> str:
    """The host of a Host header or origin authority, without port or IPv6 brackets, lower-cased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def trusted_host_names(bind_host: str, extra: tuple[str, ...]) -> frozenset[str]:
    """Loopback names, the address the server binds to (unless it is a wildcard) and the configured names."""
    names = {*LOOPBACK_NAMES, *(host_name(h) for h in extra)}
    if bind_host not in ("0.0.0.0", "::", ""):
        names.add(host_name(bind_host))
    return frozenset(names)


class HostOriginGuard:
    """400 for a Host header not in ``hosts`` (``"*"`` in it turns the check off); 403 for a POST, PUT,
    PATCH or DELETE whose ``Origin`` is neither this server (the origin's host is the request's trusted
    Host) nor one of ``origins``. Requests without an Origin header (curl, scripts) are not browsers'
    cross-site requests and pass."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if "*" not in self.hosts and host_name(host) not in self.hosts:
            await error_response(400, f"Host header {host[:100]!r} is not a name this server answers to; "
                                      "add it with --trusted-host")(scope, receive, send)
            return
        origin = headers.get("origin")
        if scope["method"] in STATE_CHANGING and origin is not None and not self._same_or_allowed(origin, host):
            await error_response(403, f"cross-origin {scope['method']} from {origin[:100]!r} refused; this "
                                      "server accepts them only from its own page or a --cors-origin")(
                scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _same_or_allowed(self, origin: str, host: str) -> bool:
        if origin.rstrip("/").lower() in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()


class QueueLimitMiddleware:
    """Admit at most ``limit`` uploads to ``path`` at once (running plus waiting for a worker); the next is
    answered 429 before its body is read, so a flood of uploads cannot pile up in memory."""

    def __init__(self, app: ASGIApp, path: str, limit: int) -> None:
        self.app = app
        self.path = path
        self.limit = limit
        self.admitted = 0  # this middleware's own count; the event loop runs it on one thread

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if self.admitted >= self.limit:
            await error_response(429, f"the server is busy: {self.limit} uploads are already running or queued "
                                      "(the --workers plus --max-queued limit); retry shortly",
                                 {"Retry-After": "1"})(scope, receive, send)
            return
        self.admitted += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.admitted -= 1
