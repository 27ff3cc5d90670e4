"""Holds end: after the TTL (the job gives their spots back, checkout is refused) or when the
customer lets go (at once). A real server running its own jobs does it unattended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from bookingtms.config import get_settings
from bookingtms.worker import run_once
from tests.factories import checkout, future_session, hold, make_activity, run_doctor


@contextmanager
def hold_ttl(seconds: int) -> Iterator[None]:
    """Holds made in-process inside this block last `seconds` (the TTL is read per request)."""
    settings = get_settings()
    before = settings.reservation_ttl_seconds
    settings.reservation_ttl_seconds = seconds
    try:
        yield
    finally:
        settings.reservation_ttl_seconds = before


async def remaining(client: httpx.AsyncClient, tenant, session_id: str) -> int:
    response = await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()["capacity_remaining"]


async def bookings_of(client: httpx.AsyncClient, tenant, activity_id: str) -> list[dict]:
    response = await client.get("/v1/bookings", headers=tenant.headers, params={"activity_id": activity_id})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def release_path(tenant, reservation_id: str) -> str:
    return f"/v1/public/venues/{tenant.embed_key}/reservations/{reservation_id}"


async def test_expired_hold_gives_its_spots_back_when_the_job_runs(client, tenant):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    with hold_ttl(1):
        held = await hold(client, tenant, session["id"], spots=3)
    assert held.status_code == 201, held.text
    assert await remaining(client, tenant, session["id"]) == 7

    await asyncio.sleep(1.5)
    result = await run_once(extend=False)
    assert result["spots_released"] >= 3
    assert await remaining(client, tenant, session["id"]) == 10

    late = await checkout(client, tenant, held.json()["reservation_id"])
    assert late.status_code == 410, late.text
    assert late.json()["code"] == "reservation_expired"
    assert await bookings_of(client, tenant, activity["id"]) == []

    await run_once(extend=False)  # a second round gives nothing back twice
    assert await remaining(client, tenant, session["id"]) == 10
    gone = await client.delete(release_path(tenant, held.json()["reservation_id"]))
    assert gone.status_code == 204, gone.text  # letting go of an expired hold is harmless ...
    assert await remaining(client, tenant, session["id"]) == 10  # ... and returns nothing again


async def test_checkout_after_the_ttl_is_refused_even_before_the_job_runs(client, tenant):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    with hold_ttl(1):
        held = await hold(client, tenant, session["id"], spots=2)
    assert held.status_code == 201, held.text

    await asyncio.sleep(1.5)
    late = await checkout(client, tenant, held.json()["reservation_id"])
    assert late.status_code == 410, late.text
    assert late.json()["code"] == "reservation_expired"
    assert await bookings_of(client, tenant, activity["id"]) == []

    await run_once(extend=False)
    assert await remaining(client, tenant, session["id"]) == 10
    code, output = await run_doctor()
    assert code == 0 and "OK" in output, output


async def test_a_released_hold_returns_capacity_at_once_and_cannot_be_checked_out(client, tenant):
    activity = await make_activity(client, tenant, capacity=5)
    session = await future_session(client, tenant, activity)
    held = await hold(client, tenant, session["id"], spots=2)
    assert held.status_code == 201, held.text
    rid = held.json()["reservation_id"]
    assert await remaining(client, tenant, session["id"]) == 3

    first = await client.delete(release_path(tenant, rid))
    assert first.status_code == 204, first.text
    assert await remaining(client, tenant, session["id"]) == 5
    second = await client.delete(release_path(tenant, rid))
    assert second.status_code == 204, second.text
    assert await remaining(client, tenant, session["id"]) == 5

    late = await checkout(client, tenant, rid)
    assert late.status_code == 410, late.text
    assert late.json()["code"] == "reservation_expired"
    assert await bookings_of(client, tenant, activity["id"]) == []
    # The freed spots really are for sale again: all 5 can be held.
    assert (await hold(client, tenant, session["id"], spots=5)).status_code == 201


async def test_a_running_server_expires_holds_by_itself(client, tenant, live_server_factory):
    server = live_server_factory({"BOOKINGTMS_RESERVATION_TTL_SECONDS": "1", "BOOKINGTMS_RUN_JOBS": "1",
                                  "BOOKINGTMS_JOB_INTERVAL_SECONDS": "0.3"})
    activity = await make_activity(client, tenant, capacity=6)
    session = await future_session(client, tenant, activity)

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        held = await hold(c, tenant, session["id"], spots=4)
        assert held.status_code == 201, held.text
        assert await remaining(client, tenant, session["id"]) == 2

        deadline = time.monotonic() + 10
        left = 2
        while time.monotonic() < deadline:
            left = await remaining(client, tenant, session["id"])
            if left == 6:
                break
            await asyncio.sleep(0.2)
        assert left == 6, "the server's job loop did not give the expired hold's spots back within 10 s"

        late = await checkout(c, tenant, held.json()["reservation_id"])
        assert late.status_code == 410 and late.json()["code"] == "reservation_expired", late.text

    code, output = await run_doctor()
    assert code == 0 and "OK" in output, output
