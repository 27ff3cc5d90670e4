"""The background job loop: run inside `serve`, or alone by `bookingtms worker`. Every job is
safe on several instances at once (SKIP LOCKED claims, idempotent effects)."""

from __future__ import annotations

import asyncio
import time

import structlog
from sqlalchemy import text

from bookingtms.db.engine import get_engine
from bookingtms.notifications.jobs import deliver_due, queue_reminders
from bookingtms.payments.jobs import release_lapsed_payments
from bookingtms.platform.jobs import audit_ended_grants
from bookingtms.reservations.jobs import expire_holds
from bookingtms.sessions.jobs import extend_horizons

log = structlog.get_logger("bookingtms.worker")

HORIZON_EVERY_SECONDS = 3600.0


async def run_once(extend: bool = True) -> dict[str, int]:
    result = {"spots_released": await expire_holds()}
    result["access_grants_ended"] = await audit_ended_grants()
    result["payments_released"] = await release_lapsed_payments()
    result["reminders_queued"] = await queue_reminders()
    result["notifications_sent"] = await deliver_due()
    if extend:
        result["activities_extended"] = await extend_horizons()
    return result


async def job_lag() -> dict[str, float]:
    """Seconds since the oldest item each job should already have dealt with became due (0 when
    none is waiting): expired holds, due notifications, lapsed payments. Read by /metrics."""
    async with get_engine().connect() as conn:
        return {job: lag for job, lag in (await conn.execute(text("SELECT job, lag_seconds FROM job_lag()"))).all()}


async def run_forever(interval: float, stop: asyncio.Event) -> None:
    last_extend = 0.0
    while not stop.is_set():
        try:
            extend = time.monotonic() - last_extend >= HORIZON_EVERY_SECONDS
            result = await run_once(extend)
            if extend:
                last_extend = time.monotonic()
            if any(result.values()):
                log.info("jobs_ran", **result)
        except Exception:  # a failing round must not stop the loop; the next round retries
            log.exception("jobs_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass
