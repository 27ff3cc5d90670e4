"""The process's Redis client (caches, revocations, rate limits), and the read-through caches of
PRD 3.3.1 kept on it.

How a cached value stays true:
* Every value lives under a *scope* (a venue's availability, a venue's public page, an embed key)
  whose generation is part of the value's Redis key. Invalidating a scope moves its generation on,
  so every value of the scope is gone at once, in every process, and a reader that read the
  database before the change committed writes its answer under the old generation, where nobody
  looks any more: stale data cannot be re-cached. (Services invalidate with
  `invalidate_after_commit`, so it happens once the change is visible, before the response.)
* The generation is the time of the last invalidation (milliseconds, Redis clock). Values computed
  from a replica are not stored within REPLICA_SETTLE_MS of one: the replica may not have replayed
  the change yet, and that answer must not be served for a whole TTL.
* Stampedes: concurrent misses of one key in a process share one computation; across processes a
  short lock (SET NX PX) lets one compute while the others wait for its value (or for the lock to
  go, then compute themselves).
* Redis unreachable: the value is computed from the database, never an error; the outage is
  logged once and Redis is left alone for OUTAGE_BACKOFF_SECONDS (one timeout, not one per request).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from bookingtms.config import get_settings

log = structlog.get_logger("bookingtms.cache")
_client: aioredis.Redis | None = None
REDIS_ERRORS = (RedisError, OSError)  # what an unreachable or failing Redis raises


def get_redis() -> aioredis.Redis:
    global _client
    if _client is None:
        url = get_settings().redis_url
        if not url:
            raise RuntimeError("REDIS_URL is not configured")
        # A bounded pool that waits for a free connection (up to 2 s) rather than failing when
        # hundreds of requests are in flight at once.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=128, timeout=2, socket_timeout=2,
                                                        socket_connect_timeout=2, health_check_interval=30)
        _client = aioredis.Redis(connection_pool=pool)
    return _client


async def close_redis() -> None:
    global _client
    if _client is not None:
        # A client given its own pool leaves the pool open unless told: the embedded Redis only
        # stops at exit when no connection is left.
        await _client.aclose(close_connection_pool=True)
        _client = None


# --------------------------------------------------------------------------------------------
# The caches (PRD 3.3.1): TTLs and scopes
# --------------------------------------------------------------------------------------------
VENUE_TTL = 300         # venue config and activity details: 5 minutes, forgotten on every edit
AVAILABILITY_TTL = 30   # session availability: 30 seconds, forgotten on every capacity change
EMBED_KEY_TTL = 300     # embed key -> organization, venue, organization status
REPLICA_SETTLE_MS = 1000
LOCK_MS = 1000          # how long one process may compute a value while the others wait
POLL_SECONDS = 0.01
OUTAGE_BACKOFF_SECONDS = 5.0
GENERATION_TTL_MS = 3600_000  # far beyond any value's TTL, so an expired generation hides nothing


def embed_scope(embed_key: str) -> str:
    # "embed2": the value carries the venue's time zone since migration 0010; values of the old
    # shape, still in Redis for minutes after an upgrade, are never read.
    return f"embed2:{embed_key}"


def venue_scope(venue_id) -> str:
    return f"venue:{venue_id}"


def availability_scope(venue_id) -> str:
    return f"availability:{venue_id}"


def _replica_settle_ms() -> int:
    """For values read through read_transaction: on the replica only when one is configured."""
    return REPLICA_SETTLE_MS if get_settings().database_read_url else 0


async def embed_lookup(embed_key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
    return await read_through("embed_key", embed_scope(embed_key), "", EMBED_KEY_TTL, compute)


async def public_venue(venue_id, compute: Callable[[], Awaitable[Any]]) -> bytes:
    """The JSON text of the venue's public page."""
    return await read_through("venue", venue_scope(venue_id), "", VENUE_TTL, compute,
                              settle_ms=_replica_settle_ms(), raw=True)


def availability_day_scope(venue_id, day: date) -> str:
    """One local day of a venue's availability: a booking moves only its session's day."""
    return f"availability:{venue_id}:{day.isoformat()}"


async def availability_days(venue_id, timezone: str, days: list[date],
                            compute: Callable[[list[date]], Awaitable[dict[date, list]]]) -> list[bytes]:
    """The JSON text of each of `days` (the venue's local days) of the venue's availability, from
    Redis where it is cached, and the rest from one `compute(missing_days)`, which stores them.

    A day's value sits under two generations: the venue's (availability_scope: every venue-wide
    change) and the day's own (availability_day_scope: a session's capacity), so a hold on Friday
    leaves the other days of the venue cached. A request is a hit only when all its days were.
    The venue's time zone is part of the key: days cut in a zone the venue just left are never read."""
    if not get_settings().cache_enabled:
        return _encode_days(days, await compute(days))
    redis = get_redis()
    if _is_down(redis):
        return await _compute_days(days, compute)
    scope = availability_scope(venue_id)
    prefix = f"cache:availability:{scope}:{timezone}:"
    day_texts = [d.isoformat() for d in days]
    try:
        found = await redis.eval(_READ_DAYS, 1 + len(days), _generation_key(scope),
                                 *(_generation_key(availability_day_scope(venue_id, d)) for d in days),
                                 prefix, *day_texts)
    except REDIS_ERRORS as exc:
        _unavailable(redis, exc)
        return await _compute_days(days, compute)
    venue_generation, rest = found[0].decode(), found[1:]
    day_generations = [g.decode() for g in rest[0::2]]
    values: list[bytes | None] = list(rest[1::2])
    missing = [i for i, value in enumerate(values) if value is None]
    if not missing:
        _count_hit("availability")
        return values
    wanted = [(day_texts[i], day_generations[i]) for i in missing]
    flight = f"{prefix}{venue_generation}:" + ",".join(f"{d}:{g}" for d, g in wanted)
    filled = await _shared("availability", flight, lambda: _fill_days(
        redis, venue_id, venue_generation, prefix, wanted, [days[i] for i in missing], compute, flight))
    for i, value in zip(missing, filled):
        values[i] = value
    return values


def _encode_days(days: list[date], by_day: dict[date, list]) -> list[bytes]:
    return [_encode(by_day.get(d, [])) for d in days]


async def _compute_days(days: list[date], compute) -> list[bytes]:
    _count_miss("availability")
    return _encode_days(days, await compute(days))


async def _fill_days(redis: aioredis.Redis, venue_id, venue_generation: str, prefix: str,
                     wanted: list[tuple[str, str]], days: list[date], compute, flight: str) -> list[bytes]:
    """The missing days: computed here, or by the process holding their lock (then read back)."""
    value_keys = [f"{prefix}{venue_generation}:{d}:{g}" for d, g in wanted]

    def store(values: list[bytes]):
        return redis.eval(
            _WRITE_DAYS, 2 + len(wanted), _generation_key(availability_scope(venue_id)), f"{flight}:lock",
            *(_generation_key(availability_day_scope(venue_id, day)) for day in days),
            venue_generation, int(AVAILABILITY_TTL * 1000), _replica_settle_ms(), prefix,
            *(item for (d, g), value in zip(wanted, values) for item in (d, g, value)))

    return await _locked_compute(redis, "availability", f"{flight}:lock", value_keys,
                                 lambda: _compute_days(days, compute), store)


# --------------------------------------------------------------------------------------------
# Read-through with generations, single flight and a cross-process lock
# --------------------------------------------------------------------------------------------
# KEYS[1] the scope's generation; ARGV the value key around the generation (a key the script
# builds itself: fine on one Redis server, not on a cluster). One round trip per read.
_READ = """
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', ARGV[1] .. gen .. ARGV[2])}
"""

# KEYS: generation, value, lock. Stores the value only if the generation is still the one the
# reader saw (and, for replica reads, old enough); frees the lock either way so waiters move on.
_WRITE = """
redis.call('DEL', KEYS[3])
local gen = redis.call('GET', KEYS[1]) or '0'
if gen ~= ARGV[1] then return 0 end
local settle = tonumber(ARGV[4])
if settle > 0 then
  local t = redis.call('TIME')
  if t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(gen) < settle then return 0 end
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS[1] the venue's availability generation, KEYS[2..] its days' generations; ARGV[1] the value
# key prefix, ARGV[2..] the days. Returns the venue generation, then each day's generation and value.
_READ_DAYS = """
local venue_gen = redis.call('GET', KEYS[1]) or '0'
local out = {venue_gen}
for i = 2, #KEYS do
  local day_gen = redis.call('GET', KEYS[i]) or '0'
  out[#out + 1] = day_gen
  out[#out + 1] = redis.call('GET', ARGV[1] .. venue_gen .. ':' .. ARGV[i] .. ':' .. day_gen)
end
return out
"""

# KEYS: venue generation, lock, then the days' generations; ARGV: the venue generation the reader
# saw, TTL ms, settle ms, value key prefix, then (day, day generation seen, value) per day. As
# _WRITE, day by day: a day whose generation moved on (or is too recent for a replica read) is
# not stored.
_WRITE_DAYS = """
redis.call('DEL', KEYS[2])
local venue_gen = redis.call('GET', KEYS[1]) or '0'
if venue_gen ~= ARGV[1] then return 0 end
local settle = tonumber(ARGV[3])
local now = 0
if settle > 0 then
  local t = redis.call('TIME')
  now = t[1] * 1000 + math.floor(t[2] / 1000)
  if now - tonumber(venue_gen) < settle then return 0 end
end
local stored = 0
for i = 3, #KEYS do
  local j = 5 + (i - 3) * 3
  local day_gen = redis.call('GET', KEYS[i]) or '0'
  if day_gen == ARGV[j + 1] and (settle == 0 or now - tonumber(day_gen) >= settle) then
    redis.call('SET', ARGV[4] .. venue_gen .. ':' .. ARGV[j] .. ':' .. day_gen, ARGV[j + 2], 'PX', ARGV[2])
    stored = stored + 1
  end
end
return stored
"""

# KEYS: generations to move on, each to now (ms) or one past its current value if that is later.
_INVALIDATE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for _, key in ipairs(KEYS) do
  local gen = math.max(now, tonumber(redis.call('GET', key) or '0') + 1)
  redis.call('SET', key, string.format('%d', gen), 'PX', ARGV[1])
end
return #KEYS
"""

_inflight: dict[str, asyncio.Task] = {}
_down_until: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> monotonic time


def _generation_key(scope: str) -> str:
    return f"cache:gen:{scope}"


def _encode(value: Any) -> bytes:
    from bookingtms.http.responses import dumps

    return dumps(value)


def _unavailable(redis: aioredis.Redis, exc: Exception) -> None:
    if redis not in _down_until:
        log.warning("cache_unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
    _down_until[redis] = time.monotonic() + OUTAGE_BACKOFF_SECONDS


def _is_down(redis: aioredis.Redis) -> bool:
    until = _down_until.get(redis)
    if until is not None and time.monotonic() >= until:
        del _down_until[redis]  # try it again
        return False
    return until is not None


async def read_through(name: str, scope: str, key: str, ttl: float, compute: Callable[[], Awaitable[Any]], *,
                       settle_ms: int = 0, raw: bool = False, client: aioredis.Redis | None = None) -> Any:
    """The cached value, or `compute()`'s, stored for `ttl` seconds. The answer is always the JSON
    form of the value (UUIDs and datetimes as strings), whether it came from Redis or not; with
    `raw`, its JSON text (bytes), which a hot endpoint can send without decoding it.
    Counts `bookingtms_cache_hits_total` / `_misses_total{cache=name}`: a miss is one computation."""
    found = await _read_through(name, scope, key, ttl, compute, settle_ms, client)
    return found if raw else orjson.loads(found)


async def _read_through(name: str, scope: str, key: str, ttl: float, compute: Callable[[], Awaitable[Any]],
                        settle_ms: int, client: aioredis.Redis | None) -> bytes:
    if not get_settings().cache_enabled:
        return _encode(await compute())
    redis = client or get_redis()
    if _is_down(redis):
        return await _compute(name, compute)
    prefix = f"cache:{name}:{scope}:"
    try:
        generation, found = await redis.eval(_READ, 1, _generation_key(scope), prefix, f":{key}")
    except REDIS_ERRORS as exc:
        _unavailable(redis, exc)
        return await _compute(name, compute)
    if found is not None:
        _count_hit(name)
        return found
    generation = generation.decode()
    value_key = f"{prefix}{generation}:{key}"
    return await _shared(name, value_key, lambda: _fill(redis, name, scope, generation, value_key, ttl, compute,
                                                        settle_ms))


async def _shared(name: str, key: str, fill: Callable[[], Awaitable[Any]]) -> Any:
    """Concurrent misses of `key` in this process share one `fill()` (the others count as hits)."""
    task = _inflight.get(key)
    if task is None:
        task = asyncio.ensure_future(fill())
        _inflight[key] = task
        task.add_done_callback(lambda done: _inflight.pop(key, None) if _inflight.get(key) is done else None)
    else:
        _count_hit(name)
    return await asyncio.shield(task)  # a caller that goes away does not cancel the others' answer


async def _fill(redis: aioredis.Redis, name: str, scope: str, generation: str, value_key: str, ttl: float,
                compute: Callable[[], Awaitable[Any]], settle_ms: int) -> bytes:
    lock_key = f"{value_key}:lock"

    async def computed() -> list[bytes]:
        return [await _compute(name, compute)]

    def store(values: list[bytes]):
        return redis.eval(_WRITE, 3, _generation_key(scope), value_key, lock_key, generation, values[0],
                          int(ttl * 1000), settle_ms)

    return (await _locked_compute(redis, name, lock_key, [value_key], computed, store))[0]


async def _locked_compute(redis: aioredis.Redis, name: str, lock_key: str, value_keys: list[str],
                          compute: Callable[[], Awaitable[list[bytes]]], store) -> list[bytes]:
    """`compute()` under a short cross-process lock, then `store(values)` (which frees the lock); a
    process that finds the lock taken waits for the holder's values instead (or computes itself if
    the lock goes without them)."""
    try:
        if not await redis.set(lock_key, b"1", nx=True, px=LOCK_MS):
            found = await _wait_for_values(redis, value_keys, lock_key)
            if found is not None:
                _count_hit(name)
                return found
    except REDIS_ERRORS as exc:
        _unavailable(redis, exc)
        return await compute()
    try:
        values = await compute()
    except BaseException:
        await _quietly(redis, redis.delete(lock_key))
        raise
    await _quietly(redis, store(values))
    return values


async def _wait_for_values(redis: aioredis.Redis, value_keys: list[str], lock_key: str) -> list[bytes] | None:
    """Another process holds the lock: its values, once all written; None if the lock went first."""
    deadline = time.monotonic() + LOCK_MS / 1000
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        *found, locked = await redis.mget(*value_keys, lock_key)
        if all(v is not None for v in found):
            return found
        if locked is None:
            return None
    return None


async def _compute(name: str, compute: Callable[[], Awaitable[Any]]) -> bytes:
    _count_miss(name)
    return _encode(await compute())


def _count_hit(name: str) -> None:
    from bookingtms.metrics import CACHE_HITS

    CACHE_HITS.labels(cache=name).inc()


def _count_miss(name: str) -> None:
    """A miss is one computation of the value."""
    from bookingtms.metrics import CACHE_MISSES

    CACHE_MISSES.labels(cache=name).inc()


async def _quietly(redis: aioredis.Redis, operation: Awaitable[Any]) -> None:
    try:
        await operation
    except REDIS_ERRORS as exc:
        _unavailable(redis, exc)


# --------------------------------------------------------------------------------------------
# Invalidation
# --------------------------------------------------------------------------------------------
async def invalidate(*scopes: str, client: aioredis.Redis | None = None) -> None:
    """Every cached value of these scopes is gone, in every process. Redis unreachable: logged
    (values expire by their TTL)."""
    if not scopes:
        return
    redis = client or get_redis()
    try:  # tried even during a known outage: a missed invalidation would serve stale data
        await redis.eval(_INVALIDATE, len(scopes), *map(_generation_key, scopes), GENERATION_TTL_MS)
    except REDIS_ERRORS as exc:
        _unavailable(redis, exc)


@dataclass(frozen=True)
class _Invalidation:
    """An after-commit step; equal steps of one transaction run once (after_commit skips repeats)."""

    scopes: tuple[str, ...]

    async def __call__(self) -> None:
        await invalidate(*self.scopes)


def invalidate_after_commit(db, *scopes: str) -> None:
    """Invalidates `scopes` once the tenant transaction `db` has committed, before the response."""
    from bookingtms.db.engine import after_commit

    if scopes:
        after_commit(db, _Invalidation(tuple(sorted(set(scopes)))))
