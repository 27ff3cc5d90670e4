"""Rate limits (PRD 3.2.1; blueprint 7.2, layer 1): a pure ASGI middleware in front of every route.

The algorithm is a moving window kept in Redis, so a limit holds across workers, processes and
hosts that share the Redis: each caller's window is a list of its hit times (Redis's clock), newest
first, at most `limit` long, and one Lua script (MOVING_WINDOW) counts a hit and reads what the
headers need in one round trip. The `limits` library parses the limits' notation; its own
strategy was not kept because it needs two round trips per request (the hit, then the window's
stats for the headers): with it, limiting cost a cached public answer 0.2-0.27 ms of the worker's
CPU (a third of a cached venue page).

Who is counted, decided cheaply before any route runs:

* `/v1/webhooks/*`: the webhook budget of the client address.
* `/v1/public/*` (the widget), and any request without a bearer we can verify: the public budget
  of the client address (`BOOKINGTMS_TRUSTED_PROXIES` decides whether X-Forwarded-For is believed).
* `Authorization: Bearer <JWT>`: only when its signature verifies (HS256 with our key) is it
  counted per user (`sub`), on the admin budget for platform admins (role `system-admin`) and
  on the authenticated budget otherwise. A forged or malformed token cannot name another user's
  budget: it is counted against its own address with the public limit.
* `Authorization: Bearer btms_<prefix>_<secret>`: counted per key prefix when the key is live
  (checked against the cached hash, as the endpoint itself does). A wrong secret for a known
  prefix does not drain that key's budget either: it is counted against its address.

Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`
(seconds) and `RateLimit-Policy`; a refusal is 429 problem+json `rate_limited` with `Retry-After`.
`/healthz`, `/readyz`, `/metrics`, `/docs`, `/redoc`, `/openapi.json` and files (`/static/`,
`/media/`, `/widget.js`) are never limited. A signed-in page counts against its user's budget (its
session cookie), like a bearer token; a refusal on a page is an HTML page (errors.error_response).

If Redis cannot be reached the middleware fails OPEN: the request is served unlimited and a
warning `rate_limits_unavailable` is logged; Redis is then left alone for `OUTAGE_BACKOFF_SECONDS`
(so an outage costs one timeout, not one per request) before it is tried again. Rate limiting
protects capacity; it must not turn a cache outage into a full outage.

`BOOKINGTMS_RATE_LIMITS=0` turns limiting off. Each limit can be overridden by an environment
variable (the table below names them), e.g. `BOOKINGTMS_RATE_LIMIT_PUBLIC="5/minute"`.
"""

from __future__ import annotations

import math
import time
from http.cookies import CookieError, SimpleCookie
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import redis.asyncio as aioredis
import structlog
from limits import RateLimitItem, parse

from bookingtms.auth.tokens import ACCESS_COOKIE, decode_access_token
from bookingtms.config import Settings, get_settings
from bookingtms.errors import AppError
from bookingtms.http import request_context
from bookingtms.metrics import RATE_LIMITED, RATE_LIMITS_SKIPPED

log = structlog.get_logger("bookingtms.ratelimit")


@dataclass(frozen=True)
class Tier:
    limit: str  # `limits` notation: "<amount>/<granularity>" or "<amount> per <n> <granularity>"
    counted_per: str
    env: str  # the environment variable that overrides `limit`


# The rate limits of PRD 3.2.1: the one place they are defined.
RATE_LIMITS: dict[str, Tier] = {
    "public": Tier("100/minute", "client IP (widget endpoints, anonymous or unverifiable callers)",
                   "BOOKINGTMS_RATE_LIMIT_PUBLIC"),
    "authenticated": Tier("1000/minute", "user (verified access token) or API key",
                          "BOOKINGTMS_RATE_LIMIT_AUTHENTICATED"),
    "admin": Tier("5000/minute", "platform admin (role system-admin)", "BOOKINGTMS_RATE_LIMIT_ADMIN"),
    "webhook": Tier("10000/minute", "client IP, on /v1/webhooks/*", "BOOKINGTMS_RATE_LIMIT_WEBHOOK"),
}

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc",
                          "/openapi.json", "/widget.js"})
# Files: the pages' CSS/JS and pictures, served without a database and cached by browsers for a year.
EXEMPT_PREFIXES = ("/static/", "/media/")
PUBLIC_PREFIX = "/v1/public/"
WEBHOOK_PREFIX = "/v1/webhooks/"
API_KEY_PREFIX = "btms_"
OUTAGE_BACKOFF_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_CONNECTIONS = 128  # per process; a check holds one for a round trip only
KEY_PREFIX = "bookingtms:ratelimit"


def _setting_field(env: str) -> str:
    return env.removeprefix("BOOKINGTMS_").lower()  # BOOKINGTMS_RATE_LIMIT_PUBLIC -> rate_limit_public


def resolve_limits(settings: Settings, overrides: dict[str, str] | None = None) -> dict[str, RateLimitItem]:
    """The table above with any environment (or explicit) overrides applied, parsed."""
    items = {}
    for name, tier in RATE_LIMITS.items():
        text = (overrides or {}).get(name) or getattr(settings, _setting_field(tier.env), None) or tier.limit
        try:
            items[name] = parse(text)
        except ValueError:
            raise ValueError(f"{tier.env}={text!r} is not a rate limit such as '100/minute'") from None
        if items[name].amount < 1:  # "0/minute" parses, but would count nothing and refuse nobody
            raise ValueError(f"{tier.env}={text!r}: a rate limit allows at least one request")
    return items


class RateLimited(AppError):
    status, code, title = 429, "rate_limited", "Too many requests"


_COUNTED_AS = {"ip": "client address", "user": "user", "apikey": "API key"}


@dataclass(frozen=True)
class Caller:
    tier: str  # a key of RATE_LIMITS
    key: str  # ip:<address> | user:<uuid> | apikey:<prefix>


def _bearer(scope) -> str | None:
    """The caller's token: the Authorization header, else a signed-in page's session cookie (staff
    at one front desk share an address, not a budget)."""
    cookie_header = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
        if name == b"cookie":
            cookie_header = value.decode("latin-1")
    if cookie_header and not scope["path"].startswith(PUBLIC_PREFIX):
        return _cookie_value(cookie_header, ACCESS_COOKIE)
    return None


def _cookie_value(header: str, name: str) -> str | None:
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return None
    return jar[name].value if name in jar and jar[name].value else None


async def _live_api_key_prefix(token: str) -> str | None:
    from bookingtms.api_keys.service import verify
    from bookingtms.api_keys.service import parse as parse_key

    parsed = parse_key(token)
    if parsed is None:
        return None
    try:
        key = await verify(token)  # cached lookup of the stored hash, as the endpoint does
    except Exception:  # noqa: BLE001 - store down: the endpoint fails too; count the address
        return None
    return parsed[0] if key is not None else None


async def identify(path: str, ip: str | None, bearer: str | None) -> Caller:
    by_address = f"ip:{ip or 'unknown'}"
    if path.startswith(WEBHOOK_PREFIX):
        return Caller("webhook", by_address)
    if path.startswith(PUBLIC_PREFIX) or bearer is None:
        return Caller("public", by_address)
    if bearer.startswith(API_KEY_PREFIX):
        prefix = await _live_api_key_prefix(bearer)
        if prefix is not None:
            return Caller("authenticated", f"apikey:{prefix}")
        return Caller("public", by_address)
    try:
        claims = decode_access_token(bearer)  # signature, algorithm, expiry
        user_id = uuid.UUID(str(claims["sub"]))
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        return Caller("public", by_address)
    tier = "admin" if claims.get("role") == "system-admin" else "authenticated"
    return Caller(tier, f"user:{user_id}")


# KEYS[1]: the caller's window; ARGV: the window's length (seconds), the limit. Returns {1 if the
# hit was counted else 0, hits in the window, seconds until the oldest of them leaves it}. Same
# rule as `limits`' moving window: a hit is refused while the limit-th newest is in the window.
# The time is Redis's, so the list stays in order whichever host's worker counts the hit.
MOVING_WINDOW = """
local expiry, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local since = now - expiry
local nth = redis.call('LINDEX', KEYS[1], limit - 1)
local allowed = not (nth and tonumber(nth) >= since)
if allowed then
    redis.call('LPUSH', KEYS[1], string.format('%.6f', now))
    redis.call('LTRIM', KEYS[1], 0, limit - 1)
    redis.call('EXPIRE', KEYS[1], expiry)
end
local low, high, last = 0, redis.call('LLEN', KEYS[1]) - 1, -1
while low <= high do
    local mid = math.floor((low + high) / 2)
    if tonumber(redis.call('LINDEX', KEYS[1], mid)) >= since then
        last, low = mid, mid + 1
    else
        high = mid - 1
    end
end
local reset_in = expiry
if last >= 0 then
    reset_in = tonumber(redis.call('LINDEX', KEYS[1], last)) + expiry - now
end
return {allowed and 1 or 0, last + 1, tostring(reset_in)}
"""


class RateLimitMiddleware:
    """Pure ASGI; registered inside the request-id middleware (which resolves the client
    address) and inside the CORS layer (so preflights are free and refusals carry CORS headers)."""

    def __init__(self, app, *, enabled: bool | None = None, limits: dict[str, RateLimitItem] | None = None,
                 redis_url: str | None = None) -> None:
        settings = get_settings()
        self.app = app
        self.enabled = settings.rate_limits if enabled is None else enabled
        self.items = limits or resolve_limits(settings)
        self._redis_url = redis_url
        self._script = None
        self._down_until = 0.0

    def _get_script(self):
        """MOVING_WINDOW on a client of its own, with short socket timeouts (an outage fails open
        quickly). Its pool makes a burst wait for a free connection (timeout=None): a pool that
        refused the 101st request at once read as an outage, and turned the limits off for everyone
        for OUTAGE_BACKOFF_SECONDS just when a burst came."""
        if self._script is None:
            url = self._redis_url or get_settings().redis_url
            if not url:
                raise RuntimeError("REDIS_URL is not configured")
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=REDIS_CONNECTIONS, timeout=None, socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
            self._script = aioredis.Redis(connection_pool=pool).register_script(MOVING_WINDOW)  # EVALSHA
        return self._script

    async def _count(self, item: RateLimitItem, caller: Caller) -> tuple[bool, int, float] | None:
        """(allowed, remaining, seconds until the window frees a request), or None when Redis is
        unavailable (fail open)."""
        now = time.monotonic()
        if now < self._down_until:
            return None
        window = item.get_expiry()
        try:
            allowed, hits, reset_in = await self._get_script()(
                keys=[f"{KEY_PREFIX}:{caller.tier}:{caller.key}:{item.amount}/{window}"],
                args=[window, item.amount])
        except Exception as exc:  # noqa: BLE001 - any Redis failure: fail open (module docstring)
            self._down_until = now + OUTAGE_BACKOFF_SECONDS
            log.warning("rate_limits_unavailable", error=f"{type(exc).__name__}: {exc}"[:300],
                        action="serving unlimited", retry_in_seconds=OUTAGE_BACKOFF_SECONDS)
            return None
        return bool(allowed), max(0, item.amount - hits), float(reset_in)

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] != "http" or not self.enabled or scope["path"] in EXEMPT_PATHS
                or scope["path"].startswith(EXEMPT_PREFIXES)):
            return await self.app(scope, receive, send)
        path = scope["path"]
        ip = scope.get("state", {}).get("client_ip")
        if ip is None and scope.get("client"):
            ip = request_context.client_ip(scope["client"][0], None)
        caller = await identify(path, ip, _bearer(scope))
        item = self.items[caller.tier]
        counted = await self._count(item, caller)
        if counted is None:
            RATE_LIMITS_SKIPPED.inc()  # so an outage, or a defect, shows at /metrics and in the benchmark
            return await self.app(scope, receive, send)
        allowed, remaining, reset_in = counted
        reset_in = max(0, math.ceil(reset_in))
        window = item.get_expiry()
        headers = {"RateLimit-Limit": str(item.amount), "RateLimit-Remaining": str(remaining),
                   "RateLimit-Reset": str(reset_in), "RateLimit-Policy": f"{item.amount};w={window}"}
        if not allowed:
            RATE_LIMITED.labels(caller.tier).inc()
            retry_after = max(1, reset_in)
            error = RateLimited(
                f"Too many requests: at most {item.amount} per {window} seconds per "
                f"{_COUNTED_AS[caller.key.partition(':')[0]]}. Retry in {retry_after} seconds.",
                headers={**headers, "Retry-After": str(retry_after)},
                limit=item.amount, window_seconds=window, retry_after=retry_after)
            from starlette.requests import Request

            from bookingtms.errors import error_response

            return await error_response(error, Request(scope))(scope, receive, send)

        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

        async def send_with_limits(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + raw
            await send(message)

        await self.app(scope, receive, send_with_limits)
