"""Security headers (blueprint 7.2) on every response, and CORS only where the widget needs it.

Every response, errors and 404s included, carries:

* `X-Content-Type-Options: nosniff`
* `Strict-Transport-Security: max-age=31536000; includeSubDomains`
* `Referrer-Policy: strict-origin-when-cross-origin`
* `Content-Security-Policy`: `STRICT_CSP` (same-origin everything, no plugins, no <base>,
  `frame-ancestors 'none'`), and `X-Frame-Options: DENY`.

The widget can be embedded by any site: its pages (`/widget`, `/widget/*`, `/widget.js`) and the
public API (`/v1/public/*`) send `frame-ancestors *` and no `X-Frame-Options`.

The API docs pages (`/docs`, `/docs/oauth2-redirect`, `/redoc`) are FastAPI's, which load Swagger
UI / ReDoc from cdn.jsdelivr.net and start them with an inline script: those pages alone get
`DOCS_CSP`, which allows exactly that CDN, the sha256 of the page's own inline scripts (computed
from the body as it is sent), Swagger UI's inline styles and data: images, and fetching
/openapi.json from this origin. They still cannot be framed. The docs need network access to
the CDN to render.

A header a route sets itself (e.g. a page with its own CSP) is left as the route set it.

CORS: `/v1/public/*` answers any origin without credentials (preflight included: GET, POST,
DELETE with Content-Type, Idempotency-Key, Last-Event-ID) and exposes the rate-limit and
request-id headers to the widget. Every other path sends no Access-Control-* header, so
browsers refuse cross-origin calls there (a preflight gets the route's 405).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from starlette.middleware.cors import CORSMiddleware

BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
)
_CSP_BODY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
             "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors ")
STRICT_CSP = _CSP_BODY + "'none'"
FRAMABLE_CSP = _CSP_BODY + "*"
DOCS_CSP = ("default-src 'none'; script-src https://cdn.jsdelivr.net{hashes}; "
            "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
            "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "connect-src 'self'; worker-src blob:; object-src 'none'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")

PUBLIC_PREFIX = "/v1/public/"
FRAMABLE_PREFIXES = ("/widget/", PUBLIC_PREFIX)
FRAMABLE_PATHS = frozenset({"/widget", "/widget.js"})

CORS_METHODS = ("GET", "POST", "DELETE")
CORS_REQUEST_HEADERS = ("Content-Type", "Idempotency-Key", "Last-Event-ID")
CORS_EXPOSED_HEADERS = ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
                        "RateLimit-Policy", "X-Request-Id", "Idempotent-Replayed", "Location")

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def is_framable(path: str) -> bool:
    return path in FRAMABLE_PATHS or path.startswith(FRAMABLE_PREFIXES)


def _script_hashes(body: bytes) -> str:
    return "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(m).digest()).decode()}'"
                   for m in _INLINE_SCRIPT.findall(body))


def _with_defaults(headers: list, defaults: list[tuple[bytes, bytes]]) -> list:
    present = {name.lower() for name, _ in headers}
    return list(headers) + [(name, value) for name, value in defaults if name not in present]


class SecurityHeadersMiddleware:
    """Pure ASGI. Installed around the whole application (see `install`), so even the 500 that
    Starlette's outermost error middleware renders carries the headers."""

    def __init__(self, app, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in self.docs_paths:
            return await self._docs(scope, receive, send)
        if is_framable(path):
            extra = list(BASE_HEADERS) + [(b"content-security-policy", FRAMABLE_CSP.encode())]
        else:
            extra = list(BASE_HEADERS) + [(b"content-security-policy", STRICT_CSP.encode()),
                                          (b"x-frame-options", b"DENY")]

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_defaults(message.get("headers", []), extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope, receive, send) -> None:
        """Holds the (small, HTML) docs page until its body is complete, to hash its inline scripts."""
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def buffered(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            csp = DOCS_CSP.format(hashes=_script_hashes(body))
            start["headers"] = _with_defaults(start.get("headers", []), list(BASE_HEADERS) + [
                (b"content-security-policy", csp.encode()), (b"x-frame-options", b"DENY")])
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, buffered)


class PublicCorsMiddleware:
    """Starlette's CORSMiddleware, applied to /v1/public/* only."""

    def __init__(self, app) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=["*"], allow_credentials=False, allow_methods=CORS_METHODS,
                                   allow_headers=CORS_REQUEST_HEADERS, expose_headers=CORS_EXPOSED_HEADERS,
                                   max_age=600)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PUBLIC_PREFIX):
            return await self.cors(scope, receive, send)
        await self.app(scope, receive, send)


def install(app) -> None:
    """Wraps the application's whole middleware stack in SecurityHeadersMiddleware. (Middleware
    added with `add_middleware` sits inside Starlette's ServerErrorMiddleware, which renders a 500
    past it; this layer sits outside, so nothing leaves without the headers.)"""
    docs = frozenset(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p)
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: SecurityHeadersMiddleware(build(), docs_paths=docs)
