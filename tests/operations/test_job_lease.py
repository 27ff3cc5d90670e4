"""The job loops of one database take turns: only the holder of the Redis lease runs a round, so
`serve --workers N` (or several servers) does the jobs' work once, not N times; a holder that goes
away hands over at once when it stops, or when its lease runs out if it died."""

from __future__ import annotations

import asyncio

from bookingtms import worker
from bookingtms.cache import get_redis


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
    rounds: list[float] = []
    real_run_once = worker.run_once

    async def counted(extend: bool = True):
        rounds.append(asyncio.get_running_loop().time())
        return await real_run_once(extend=False)

    monkeypatch.setattr(worker, "run_once", counted)
    await get_redis().delete(worker.lease_key())
    interval, seconds = 0.1, 1.5
    stop = asyncio.Event()
    loops = [asyncio.create_task(worker.run_forever(interval, stop)) for _ in range(2)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*loops)
    # One loop at a time does at most one round per interval (each round takes some time too);
    # both at once would have done about twice as many.
    assert 3 <= len(rounds) <= seconds / interval + 2, rounds
    assert await get_redis().get(worker.lease_key()) is None  # given up on stopping
