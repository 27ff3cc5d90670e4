"""The read-through helper itself, on the real Redis: hits, invalidation, one computation for a
stampede (in one process, and across processes through the Redis lock), no stale re-caching after
an invalidation, and no error when Redis is unreachable."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from bookingtms import cache
from bookingtms.config import get_settings


def counted(name: str) -> tuple[float, float]:
    """(hits, misses) so far of the cache `name`."""
    return (REGISTRY.get_sample_value("bookingtms_cache_hits_total", {"cache": name}) or 0.0,
            REGISTRY.get_sample_value("bookingtms_cache_misses_total", {"cache": name}) or 0.0)


class Source:
    """A stand-in for the database: counts how often it is asked, answers what it holds now."""

    def __init__(self, value, delay: float = 0.0):
        self.value, self.delay, self.calls = value, delay, 0

    async def __call__(self):
        self.calls += 1
        answer = self.value  # read "the database" first, then take time, as a real query does
        if self.delay:
            await asyncio.sleep(self.delay)
        return answer


def scope() -> str:
    return f"test:{uuid.uuid4()}"


async def test_a_second_read_is_a_hit_until_its_scope_is_invalidated():
    name, where, source = "test_basic", scope(), Source({"id": uuid.uuid4(), "n": 1})
    before = counted(name)
    first = await cache.read_through(name, where, "k", 30, source)
    assert first == {"id": str(source.value["id"]), "n": 1}  # always the JSON form
    source.value = {"id": source.value["id"], "n": 2}
    assert await cache.read_through(name, where, "k", 30, source) == first  # served from Redis
    assert source.calls == 1
    assert counted(name) == (before[0] + 1, before[1] + 1)

    await cache.invalidate(where)
    assert (await cache.read_through(name, where, "k", 30, source))["n"] == 2
    assert source.calls == 2


async def test_values_expire_with_their_ttl():
    name, where, source = "test_ttl", scope(), Source(1)
    await cache.read_through(name, where, "k", 0.3, source)
    await cache.read_through(name, where, "k", 0.3, source)
    assert source.calls == 1
    await asyncio.sleep(0.4)
    await cache.read_through(name, where, "k", 0.3, source)
    assert source.calls == 2


async def test_fifty_concurrent_misses_in_one_process_compute_once():
    name, where, source = "test_stampede", scope(), Source([1, 2, 3], delay=0.2)
    hits, misses = counted(name)
    answers = await asyncio.gather(*(cache.read_through(name, where, "hot", 30, source) for _ in range(50)))
    assert answers == [[1, 2, 3]] * 50
    assert source.calls == 1
    assert counted(name) == (hits + 49, misses + 1)


async def test_while_another_process_computes_the_others_wait_for_its_value():
    """Another process holds the key's lock (it is computing): this one waits and takes its value."""
    name, where, source = "test_lock", scope(), Source("mine")
    redis = cache.get_redis()
    value_key = f"cache:{name}:{where}:0:k"
    await redis.set(f"{value_key}:lock", b"1", px=cache.LOCK_MS)

    async def other_process_finishes():
        await asyncio.sleep(0.15)
        await redis.set(value_key, b'"theirs"', px=30_000)

    answer, _ = await asyncio.gather(cache.read_through(name, where, "k", 30, source), other_process_finishes())
    assert answer == "theirs" and source.calls == 0


async def test_a_lock_left_by_a_crashed_process_delays_but_does_not_block():
    name, where, source = "test_lock_expiry", scope(), Source("computed here")
    await cache.get_redis().set(f"cache:{name}:{where}:0:k:lock", b"1", px=200)
    started = time.monotonic()
    assert await cache.read_through(name, where, "k", 30, source) == "computed here"
    assert source.calls == 1 and 0.15 < time.monotonic() - started < cache.LOCK_MS / 1000 + 0.5


async def test_a_reader_that_read_before_a_change_cannot_recache_the_old_value():
    """A slow reader reads the old value, the change commits and invalidates, then the reader
    finishes: the next reader must see the new value, not the one the slow reader stored."""
    name, where = "test_race", scope()
    source = Source("old", delay=0.3)
    slow = asyncio.ensure_future(cache.read_through(name, where, "k", 30, source))
    await asyncio.sleep(0.1)  # the slow reader has read "old" from the database
    source.value, source.delay = "new", 0  # the change commits...
    await cache.invalidate(where)  # ...and invalidates
    assert await slow == "old"  # it answers what it read, as any in-flight request would
    assert await cache.read_through(name, where, "k", 30, source) == "new"
    assert await cache.read_through(name, where, "k", 30, source) == "new"
    assert source.calls == 2


async def test_replica_answers_are_not_stored_just_after_an_invalidation():
    """Within the settle window a replica may not have replayed the change yet: such an answer is
    served but not kept for a whole TTL."""
    name, where, source = "test_settle", scope(), Source("maybe stale")
    await cache.invalidate(where)
    await cache.read_through(name, where, "k", 30, source, settle_ms=300)
    await cache.read_through(name, where, "k", 30, source, settle_ms=300)
    assert source.calls == 2
    await asyncio.sleep(0.35)
    await cache.read_through(name, where, "k", 30, source, settle_ms=300)
    await cache.read_through(name, where, "k", 30, source, settle_ms=300)
    assert source.calls == 3


async def test_errors_are_not_cached_and_reach_every_waiter():
    name, where = "test_errors", scope()
    calls = 0

    async def failing():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise ValueError("bad query")

    results = await asyncio.gather(*(cache.read_through(name, where, "k", 30, failing) for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results) and calls == 1
    with pytest.raises(ValueError):
        await cache.read_through(name, where, "k", 30, failing)
    assert calls == 2


@pytest.fixture
def closed_port_redis():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=1, socket_connect_timeout=1)


async def test_with_redis_unreachable_the_value_is_computed_and_nothing_fails(closed_port_redis):
    name, where, source = "test_down", scope(), Source({"n": 1})
    for _ in range(3):
        assert await cache.read_through(name, where, "k", 30, source, client=closed_port_redis) == {"n": 1}
    assert source.calls == 3
    await cache.invalidate(where, client=closed_port_redis)  # logged, not raised
    await closed_port_redis.aclose()


async def test_switched_off_it_always_computes(monkeypatch):
    monkeypatch.setattr(get_settings(), "cache_enabled", False)
    name, where, source = "test_off", scope(), Source(1)
    before = counted(name)
    for _ in range(3):
        await cache.read_through(name, where, "k", 30, source)
    assert source.calls == 3 and counted(name) == before


async def test_availability_days_stampede_computes_once_and_an_invalidated_day_alone_is_recomputed():
    from datetime import date, timedelta

    venue = uuid.uuid4()
    days = [date(2030, 1, 1) + timedelta(days=i) for i in range(3)]
    asked: list[list[date]] = []

    async def compute(missing):
        asked.append(list(missing))
        await asyncio.sleep(0.05)
        return {d: [{"day": d.isoformat(), "asked": len(asked)}] for d in missing}

    answers = await asyncio.gather(*(cache.availability_days(venue, "Europe/Paris", days, compute) for _ in range(20)))
    assert asked == [days] and all(a == answers[0] for a in answers)

    await cache.invalidate(cache.availability_day_scope(venue, days[1]))
    again = await cache.availability_days(venue, "Europe/Paris", days, compute)
    assert asked[1:] == [[days[1]]]  # only the invalidated day was computed again
    assert again[0] == answers[0][0] and again[2] == answers[0][2] and again[1] != answers[0][1]

    await cache.invalidate(cache.availability_scope(venue))  # a venue-wide change: every day goes
    await cache.availability_days(venue, "Europe/Paris", days, compute)
    assert asked[2:] == [days]
