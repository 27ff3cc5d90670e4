"""The background job loop: run inside `serve`, or alone by `bookingtms worker`. Every job is
safe on several instances at once (SKIP LOCKED claims, idempotent effects), but running them in
every worker of every server only multiplies the work: the loops of one database take turns through
a lease in Redis, and only its holder runs a round (all of them do while Redis is away)."""

from __future__ import annotations

import asyncio
import time
import uuid

import structlog
from sqlalchemy import make_url, text

from bookingtms.cache import REDIS_ERRORS, get_redis
from bookingtms.config import get_settings
from bookingtms.db.engine import lookup_connection
from bookingtms.notifications.jobs import deliver_due, queue_reminders
from bookingtms.payments.jobs import release_lapsed_payments
from bookingtms.platform.jobs import audit_ended_grants
from bookingtms.reservations.jobs import expire_holds
from bookingtms.sessions.jobs import extend_horizons

log = structlog.get_logger("bookingtms.worker")

HORIZON_EVERY_SECONDS = 3600.0
# Reminders go out a day ahead, so a minute late is on time; their search reads a few days of
# bookings across tenants, too much for every round.
REMINDERS_EVERY_SECONDS = 60.0


async def run_once(extend: bool = True, remind: bool = True) -> dict[str, int]:
    result = {"spots_released": await expire_holds()}
    result["access_grants_ended"] = await audit_ended_grants()
    result["payments_released"] = await release_lapsed_payments()
    if remind:
        result["reminders_queued"] = await queue_reminders()
    result["notifications_sent"] = await deliver_due()
    if extend:
        result["activities_extended"] = await extend_horizons()
    return result


async def job_lag() -> dict[str, float]:
    """Seconds since the oldest item each job should already have dealt with became due (0 when
    none is waiting): expired holds, due notifications, lapsed payments. Read by /metrics."""
    async with lookup_connection() as conn:
        return {job: lag for job, lag in (await conn.execute(text("SELECT job, lag_seconds FROM job_lag()"))).all()}


# Held for a few rounds, so a holder that died hands over within LEASE_ROUNDS intervals.
LEASE_ROUNDS = 3
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def lease_key() -> str:
    """One lease per database: the loops that share it share the work; a test run's own database
    has its own."""
    url = make_url(get_settings().database_url or "").render_as_string(hide_password=True)
    return f"bookingtms:jobs:lease:{url}"


async def hold_lease(holder: str, interval: float) -> bool:
    """True if `holder` has (or now takes) the job lease; True as well when Redis cannot say."""
    try:
        return bool(await get_redis().eval(_RENEW, 1, lease_key(), holder, int(interval * LEASE_ROUNDS * 1000)))
    except REDIS_ERRORS:
        return True


async def release_lease(holder: str) -> None:
    try:
        await get_redis().eval(_RELEASE, 1, lease_key(), holder)
    except REDIS_ERRORS:
        pass


async def run_forever(interval: float, stop: asyncio.Event) -> None:
    holder = uuid.uuid4().hex
    try:
        await _rounds(interval, stop, holder)
    finally:
        await release_lease(holder)  # the next loop need not wait for the lease to run out


async def _rounds(interval: float, stop: asyncio.Event, holder: str) -> None:
    # None, not 0.0: the monotonic clock may start near 0 (a fresh machine); the first round does all.
    last_extend: float | None = None
    last_remind: float | None = None
    while not stop.is_set():
        if await hold_lease(holder, interval):
            try:
                extend, remind = _due(last_extend, HORIZON_EVERY_SECONDS), _due(last_remind, REMINDERS_EVERY_SECONDS)
                result = await _holding_lease(run_once(extend, remind), holder, interval)
                if extend:
                    last_extend = time.monotonic()
                if remind:
                    last_remind = time.monotonic()
                if any(result.values()):
                    log.info("jobs_ran", **result)
            except Exception:  # a failing round must not stop the loop; the next round retries
                log.exception("jobs_failed")
        await _pause(stop, interval)


async def _holding_lease(job, holder: str, interval: float):
    """Runs `job`, renewing the lease every interval meanwhile: a round longer than the lease
    (a large backlog, a slow database) must not let another loop start its own beside it."""
    task = asyncio.ensure_future(job)
    try:
        while not (await asyncio.wait({task}, timeout=interval))[0]:
            await hold_lease(holder, interval)
    except asyncio.CancelledError:  # the loop is being cancelled: so is its round
        task.cancel()
        raise
    return task.result()


def _due(last: float | None, every: float) -> bool:
    return last is None or time.monotonic() - last >= every


async def _pause(stop: asyncio.Event, interval: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=interval)
    except asyncio.TimeoutError:
        pass
