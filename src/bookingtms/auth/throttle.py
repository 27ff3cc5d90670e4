"""Sign-in throttling (PRD 5.4): failed attempts are counted per account and per client address in
Redis, so the limits hold across workers and processes, with the `limits` library's moving window.

* per account (the email as typed, lower-cased; whether or not it exists): 5 failures in 15 minutes
* per client address: 20 failures in 15 minutes

A failure is a wrong password, a sign-in to a deactivated account, or a wrong or replayed
second-factor code. Once a window is full, every attempt for that account (or from that address)
is answered 429 `too_many_attempts` with `Retry-After` before any password is checked, until the
oldest failure leaves the window. A successful sign-in is never counted, and it clears its
account's count (not the address's: an attacker with an account of their own could otherwise
reset it between guesses).

Counters are kept per database (a short hash of DATABASE_URL in the key), so deployments, or test
runs, that share one Redis do not throttle each other. If Redis is unreachable, sign-in is not
throttled (and a warning is logged) rather than refused for everyone. `BOOKINGTMS_RATE_LIMITS=false`
turns throttling off together with the request rate limits (load tests, fuzzing); keep it on in
production."""

from __future__ import annotations

import hashlib
import math
import time

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from bookingtms.cache import get_redis
from bookingtms.config import get_settings
from bookingtms.errors import AppError

log = structlog.get_logger("bookingtms.auth.throttle")

ACCOUNT_LIMIT: RateLimitItem = parse("5 per 15 minutes")
ADDRESS_LIMIT: RateLimitItem = parse("20 per 15 minutes")


class TooManyAttempts(AppError):
    status, code, title = 429, "too_many_attempts", "Too many sign-in attempts"


_limiter: MovingWindowRateLimiter | None = None
_limiter_client = None


def _storage_uri(url: str) -> str:
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return "async+" + url


def limiter() -> MovingWindowRateLimiter:
    """One limiter per Redis client (the client is recreated after the app closes it)."""
    global _limiter, _limiter_client
    client = get_redis()
    if _limiter is None or _limiter_client is not client:
        settings = get_settings()
        namespace = hashlib.sha256((settings.database_url or "").encode()).hexdigest()[:12]
        storage = RedisStorage(_storage_uri(settings.redis_url or "redis://localhost"), implementation="redispy",
                               connection_pool=client.connection_pool, key_prefix=f"bookingtms:{namespace}:signin")
        _limiter, _limiter_client = MovingWindowRateLimiter(storage), client
    return _limiter


def _account(email: str) -> tuple[str, str]:
    return "account", hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def _keys(email: str, ip: str | None) -> list[tuple[RateLimitItem, tuple[str, str], str]]:
    if not get_settings().rate_limits:
        return []
    keys = [(ACCOUNT_LIMIT, _account(email), "this account")]
    if ip:
        keys.append((ADDRESS_LIMIT, ("address", ip), "your network address"))
    return keys


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


async def check(email: str, ip: str | None) -> None:
    """Raises TooManyAttempts if the account or the address has no attempt left in its window."""
    try:
        blocked: list[tuple[int, str, RateLimitItem]] = []
        for item, identifiers, label in _keys(email, ip):
            if not await limiter().test(item, *identifiers):
                stats = await limiter().get_window_stats(item, *identifiers)
                blocked.append((max(1, math.ceil(stats.reset_time - time.time())), label, item))
    except Exception as exc:  # Redis down: do not lock everyone out
        log.warning("signin_throttle_unavailable", error=type(exc).__name__)
        return
    if blocked:
        retry_after, label, item = max(blocked, key=lambda b: b[0])
        raise TooManyAttempts(
            f"Too many failed sign-in attempts for {label} ({item.amount} in {item.multiples} minutes). "
            f"Try again in {_minutes(retry_after)}, or reset your password.",
            headers={"Retry-After": str(retry_after)}, retry_after=retry_after)


async def record_failure(email: str, ip: str | None) -> None:
    try:
        for item, identifiers, _ in _keys(email, ip):
            await limiter().hit(item, *identifiers)
    except Exception as exc:
        log.warning("signin_throttle_unavailable", error=type(exc).__name__)


async def record_success(email: str) -> None:
    """A successful sign-in clears its account's failures (never the address's)."""
    if not get_settings().rate_limits:
        return
    try:
        await limiter().clear(ACCOUNT_LIMIT, *_account(email))
    except Exception as exc:
        log.warning("signin_throttle_unavailable", error=type(exc).__name__)
