"""The job loops of one database take turns: only the holder of the Redis lease runs a round, so
`serve --workers N` (or several servers) does the jobs' work once, not N times; a holder that goes
away hands over at once when it stops, or when its lease runs out if it died."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from sqlalchemy import text

from bookingtms import worker
from bookingtms.cache import get_redis
from bookingtms.db.engine import DbContext, tenant_transaction
from tests.factories import make_activity


async def test_one_holder_of_the_job_lease_at_a_time():
    await get_redis().delete(worker.lease_key())
    assert await worker.hold_lease("first", 0.2)
    assert await worker.hold_lease("first", 0.2)  # renewed by its holder
    assert not await worker.hold_lease("second", 0.2)
    await worker.release_lease("second")  # only the holder can give it up
    assert not await worker.hold_lease("second", 0.2)
    await worker.release_lease("first")
    assert await worker.hold_lease("second", 0.2)
    await asyncio.sleep(0.2 * worker.LEASE_ROUNDS + 0.2)  # "second" died without giving it up
    assert await worker.hold_lease("first", 0.2)
    await worker.release_lease("first")


async def test_two_job_loops_on_one_database_run_one_round_at_a_time(monkeypatch):
    rounds: list[tuple[float, float]] = []  # (began, ended) of each round, whichever loop ran it
    real_run_once = worker.run_once

    async def counted(extend: bool = True, remind: bool = True):
        began = asyncio.get_running_loop().time()
        try:
            result = await real_run_once(extend=False)
            if not rounds:  # the first round outlasts the lease
                await asyncio.sleep(interval * worker.LEASE_ROUNDS + 0.3)
            return result
        finally:
            rounds.append((began, asyncio.get_running_loop().time()))

    monkeypatch.setattr(worker, "run_once", counted)
    await get_redis().delete(worker.lease_key())
    interval = 0.2  # a round may take longer than the lease (3 intervals): it is renewed
    stop = asyncio.Event()
    loops = [asyncio.create_task(worker.run_forever(interval, stop)) for _ in range(2)]
    # Until a few rounds after the long one have run (a busy machine makes every round slower),
    # then one more second in which the rounds are counted.
    for _ in range(300):
        if len(rounds) >= 4:
            break
        await asyncio.sleep(0.05)
    counted_from = asyncio.get_running_loop().time()
    await asyncio.sleep(1.0)
    counted_until = asyncio.get_running_loop().time()
    stop.set()
    await asyncio.gather(*loops)
    # Rounds never overlap, even one longer than the lease, and there is at most one per interval
    # (each loop pauses an interval after its round); both loops at once would do about twice as many.
    rounds.sort()
    assert len(rounds) >= 4, rounds
    assert all(ended <= next_began for (_, ended), (next_began, _) in zip(rounds, rounds[1:])), rounds
    in_second = [began for began, _ in rounds if counted_from <= began < counted_until]
    assert 1 <= len(in_second) <= (counted_until - counted_from) / interval + 1, rounds
    assert await get_redis().get(worker.lease_key()) is None  # given up on stopping


async def test_a_new_job_loop_extends_the_session_horizons_in_its_first_round(client, tenant, monkeypatch):
    """On a machine up for less than an hour the monotonic clock is small; the first round must
    still extend the horizons, not wait for the hour to pass."""
    activity = await make_activity(client, tenant)
    async with tenant_transaction(DbContext(organization_id=tenant.organization_id)) as db:
        horizon = text("SELECT sessions_generated_until FROM activities WHERE id = :a")
        generated = (await db.execute(horizon, {"a": activity["id"]})).scalar_one()
        # Two days later: the activity's horizon is short, as the daily job would find it.
        await db.execute(text("UPDATE activities SET sessions_generated_until = sessions_generated_until - 2 "
                              "WHERE id = :a"), {"a": activity["id"]})
    monkeypatch.setattr(worker, "time", SimpleNamespace(monotonic=lambda: 10.0))  # ten seconds after boot
    await get_redis().delete(worker.lease_key())
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run_forever(0.05, stop))
    await asyncio.sleep(1.0)
    stop.set()
    await loop
    async with tenant_transaction(DbContext(organization_id=tenant.organization_id)) as db:
        assert (await db.execute(horizon, {"a": activity["id"]})).scalar_one() == generated


async def test_reminders_are_searched_for_once_a_minute_not_every_round(monkeypatch):
    clock = SimpleNamespace(now=10.0)
    monkeypatch.setattr(worker, "time", SimpleNamespace(monotonic=lambda: clock.now))
    rounds, searches = [], []
    real_run_once, real_queue_reminders = worker.run_once, worker.queue_reminders

    async def counted_round(extend: bool = True, remind: bool = True):
        try:
            return await real_run_once(extend=False, remind=remind)
        finally:
            rounds.append(clock.now)

    async def counted_search(*args, **kwargs):
        searches.append(clock.now)
        return await real_queue_reminders(*args, **kwargs)

    async def rounds_reach(count: int) -> None:
        for _ in range(500):
            if len(rounds) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"only {len(rounds)} rounds ran")

    monkeypatch.setattr(worker, "run_once", counted_round)
    monkeypatch.setattr(worker, "queue_reminders", counted_search)
    await get_redis().delete(worker.lease_key())
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run_forever(0.01, stop))
    await rounds_reach(3)
    assert searches == [10.0]  # the first round searches, the next ones in that minute do not
    clock.now += worker.REMINDERS_EVERY_SECONDS
    await rounds_reach(len(rounds) + 3)
    stop.set()
    await loop
    assert searches == [10.0, 70.0]
