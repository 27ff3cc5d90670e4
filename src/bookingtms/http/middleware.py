"""Request id and one structured log line per request (pure ASGI, no per-request task hop)."""

from __future__ import annotations

import time
import uuid

import structlog

from bookingtms.http import request_context

log = structlog.get_logger("bookingtms.http")


class RequestContextMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        peer = scope["client"][0] if scope.get("client") else None
        ip = request_context.client_ip(peer, headers.get(b"x-forwarded-for", b"").decode("latin-1") or None)
        # Behind a trusted TLS-terminating proxy the page cookies are Secure and URLs https.
        scope["scheme"] = request_context.scheme(peer, scope.get("scheme", "http"),
                                                 headers.get(b"x-forwarded-proto", b"").decode("latin-1") or None)
        scope["state"]["client_ip"] = ip
        context = request_context.begin(request_context.RequestInfo(
            request_id=request_id, ip=ip, user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:300] or None))
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info("request", method=scope["method"], path=scope["path"], status=status, ip=ip,
                     duration_ms=round((time.perf_counter() - started) * 1000, 2))
            structlog.contextvars.clear_contextvars()
            request_context.end(context)
