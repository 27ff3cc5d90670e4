"""Many buyers at once, over real HTTP to a real server process: capacity is never oversold, a buyer
is refused only when capacity is really gone, the same hold or booking is converted or cancelled
exactly once, and `bookingtms doctor` finds the books balanced afterwards (and finds them
unbalanced when they are)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta

import httpx
from sqlalchemy import text

from tests.factories import book, future_session, hold, make_activity, run_doctor

CUSTOMER = {"email": "racer@example.com", "first_name": "Rae", "last_name": "Racer"}


@asynccontextmanager
async def http(base_url: str, connections: int = 250) -> AsyncIterator[httpx.AsyncClient]:
    """A real-socket client to a live server, with room for every request of a burst at once."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(60.0)) as c:
        yield c


async def assert_doctor_ok() -> None:
    code, output = await run_doctor()
    assert code == 0 and "OK" in output, output


async def remaining(client: httpx.AsyncClient, tenant, session_id: str) -> int:
    response = await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()["capacity_remaining"]


async def session_bookings(client: httpx.AsyncClient, tenant, activity_id: str) -> list[dict]:
    response = await client.get("/v1/bookings", headers=tenant.headers,
                                params={"activity_id": activity_id, "limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def hold_body(session_id: str, spots: int, n: int) -> dict:
    return {"session_id": session_id, "spots": spots, "customer_email": f"buyer{n}@example.com"}


def assert_no_server_error(responses: list[httpx.Response]) -> None:
    broken = [(r.status_code, r.text) for r in responses if r.status_code >= 500]
    assert not broken, broken[:3]


# --------------------------------------------------------------------------------------------
# Holds
# --------------------------------------------------------------------------------------------
async def test_200_concurrent_holds_on_10_spots_sell_exactly_10(client, tenant, live_server):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    path = f"/v1/public/venues/{tenant.embed_key}/reservations"

    async with http(live_server.url) as c:
        responses = await asyncio.gather(*(c.post(path, json=hold_body(session["id"], 1, n)) for n in range(200)))

    assert_no_server_error(responses)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 10, 409: 190}, statuses
    for r in responses:
        body = r.json()
        if r.status_code == 201:
            assert body["session_id"] == session["id"] and body["spots"] == 1
        else:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert body["code"] == "sold_out", body
            assert body["capacity_remaining"] == 0, body
    assert len({r.json()["reservation_id"] for r in responses if r.status_code == 201}) == 10

    assert await remaining(client, tenant, session["id"]) == 0
    day = date.fromisoformat(session["start_time"][:10])
    public = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability", params={
        "activity_id": activity["id"], "from": (day - timedelta(days=1)).isoformat(),
        "to": (day + timedelta(days=1)).isoformat()})
    assert public.status_code == 200, public.text
    shown = {s["id"]: s["capacity_remaining"] for s in public.json()["sessions"]}
    assert shown[session["id"]] == 0  # the widget shows it as full too
    await assert_doctor_ok()


async def test_concurrent_holds_of_mixed_sizes_never_oversell_nor_refuse_needlessly(client, tenant, live_server):
    activity = await make_activity(client, tenant, capacity=20, max_players=4)
    session = await future_session(client, tenant, activity)
    path = f"/v1/public/venues/{tenant.embed_key}/reservations"
    sizes = [random.Random(20260101 + n).randint(1, 4) for n in range(150)]

    async with http(live_server.url) as c:
        responses = await asyncio.gather(*(c.post(path, json=hold_body(session["id"], s, n))
                                           for n, s in enumerate(sizes)))

    assert_no_server_error(responses)
    assert {r.status_code for r in responses} <= {201, 409}, Counter(r.status_code for r in responses)
    granted = [s for s, r in zip(sizes, responses) if r.status_code == 201]
    refused = [(s, r.json()) for s, r in zip(sizes, responses) if r.status_code == 409]
    for s, r in zip(sizes, responses):
        if r.status_code == 201:
            assert r.json()["spots"] == s
    assert all(body["code"] == "sold_out" for _, body in refused), refused[:3]
    # Nothing is released during the burst, so capacity only falls: every refusal must have seen
    # fewer spots left than it asked for (no spurious conflict refusals).
    assert all(body["capacity_remaining"] < s for s, body in refused), \
        [(s, body["capacity_remaining"]) for s, body in refused if body["capacity_remaining"] >= s][:5]

    taken = sum(granted)
    assert taken <= 20
    left = await remaining(client, tenant, session["id"])
    assert left == 20 - taken
    assert refused, "150 buyers of 1-4 spots cannot all fit in 20"
    assert left < min(s for s, _ in refused), (left, sorted({s for s, _ in refused}))
    assert taken >= 20 - 3
    await assert_doctor_ok()


async def test_widget_holds_and_staff_bookings_compete_for_the_same_spots_fairly(client, tenant, live_server):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    path = f"/v1/public/venues/{tenant.embed_key}/reservations"

    async with http(live_server.url) as c:
        def widget(n: int):
            return c.post(path, json=hold_body(session["id"], 1, n))

        def staff(n: int):
            return c.post("/v1/bookings", headers=tenant.headers, json={
                "session_id": session["id"], "guest_count": 1,
                "customer": {"email": f"walkin{n}@example.com", "first_name": "Walk", "last_name": "In"}})

        kinds = ["staff" if n % 3 == 0 else "widget" for n in range(60)]
        responses = await asyncio.gather(*((staff if k == "staff" else widget)(n) for n, k in enumerate(kinds)))

    assert_no_server_error(responses)
    assert Counter(r.status_code for r in responses) == {201: 10, 409: 50}, \
        Counter((k, r.status_code) for k, r in zip(kinds, responses))
    assert all(r.json()["code"] == "sold_out" for r in responses if r.status_code == 409)
    staff_won = sum(1 for k, r in zip(kinds, responses) if k == "staff" and r.status_code == 201)
    assert len(await session_bookings(client, tenant, activity["id"])) == staff_won
    assert await remaining(client, tenant, session["id"]) == 0
    await assert_doctor_ok()


async def test_concurrent_retries_of_one_hold_with_an_idempotency_key_hold_once(client, tenant, live_server):
    activity = await make_activity(client, tenant, capacity=10, max_players=4)
    session = await future_session(client, tenant, activity)
    path = f"/v1/public/venues/{tenant.embed_key}/reservations"
    headers = {"Idempotency-Key": f"retry-{session['id']}"}

    async with http(live_server.url) as c:
        responses = await asyncio.gather(*(c.post(path, headers=headers, json=hold_body(session["id"], 3, 0))
                                           for _ in range(10)))

    assert_no_server_error(responses)
    assert [r.status_code for r in responses] == [201] * 10, [(r.status_code, r.text) for r in responses]
    assert len({r.json()["reservation_id"] for r in responses}) == 1
    assert await remaining(client, tenant, session["id"]) == 7
    await assert_doctor_ok()


# --------------------------------------------------------------------------------------------
# The same hold or booking, many times at once
# --------------------------------------------------------------------------------------------
async def test_the_same_hold_checked_out_concurrently_books_once(client, tenant, live_server):
    activity = await make_activity(client, tenant, capacity=8, price_amount=1500)
    session = await future_session(client, tenant, activity)
    base = f"/v1/public/venues/{tenant.embed_key}/reservations"

    async with http(live_server.url) as c:
        held = await c.post(base, json={"session_id": session["id"], "spots": 3, "customer_email": CUSTOMER["email"]})
        assert held.status_code == 201, held.text
        rid = held.json()["reservation_id"]
        responses = await asyncio.gather(*(c.post(f"{base}/{rid}/checkout", json={"customer": CUSTOMER})
                                           for _ in range(10)))

    assert_no_server_error(responses)
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 9}, [(r.status_code, r.text) for r in responses]
    assert all(r.json()["code"] == "reservation_converted" for r in responses if r.status_code == 409)
    winner = next(r.json()["booking"] for r in responses if r.status_code == 201)
    assert winner["status"] == "confirmed" and winner["guest_count"] == 3 and winner["total_amount"] == 4500

    bookings = await session_bookings(client, tenant, activity["id"])
    assert [b["id"] for b in bookings] == [winner["id"]]
    assert await remaining(client, tenant, session["id"]) == 5
    await assert_doctor_ok()


async def test_one_booking_cancelled_concurrently_by_staff_and_customer_cancels_once(client, tenant, live_server):
    activity = await make_activity(client, tenant, capacity=6)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], spots=4, email=CUSTOMER["email"])
    other = await book(client, tenant, session["id"], spots=1, email="bystander@example.com")
    assert await remaining(client, tenant, session["id"]) == 1

    async with http(live_server.url) as c:
        def staff():
            return c.post(f"/v1/bookings/{booking['id']}/cancel", headers=tenant.headers, json={"refund": "none"})

        def customer():
            return c.post(f"/v1/public/bookings/{booking['reference']}/cancel", json={"email": CUSTOMER["email"]})

        responses = await asyncio.gather(*((staff if n % 2 else customer)() for n in range(10)))

    assert_no_server_error(responses)
    assert Counter(r.status_code for r in responses) == {200: 1, 409: 9}, [(r.status_code, r.text) for r in responses]
    assert all(r.json()["code"] == "already_cancelled" for r in responses if r.status_code == 409)
    assert next(r for r in responses if r.status_code == 200).json()["status"] == "cancelled"

    # The 4 spots came back exactly once: the bystander's booking still holds its 1.
    assert await remaining(client, tenant, session["id"]) == 5
    statuses = {b["id"]: b["status"] for b in await session_bookings(client, tenant, activity["id"])}
    assert statuses == {booking["id"]: "cancelled", other["id"]: "confirmed"}
    await assert_doctor_ok()


async def test_checkout_racing_release_of_the_same_hold_has_exactly_one_winner(client, tenant, live_server):
    activity = await make_activity(client, tenant, capacity=20, max_players=4)
    session = await future_session(client, tenant, activity)
    base = f"/v1/public/venues/{tenant.embed_key}/reservations"
    rounds = 6

    async with http(live_server.url) as c:
        holds = []
        for n in range(rounds):
            held = await c.post(base, json=hold_body(session["id"], 2 + n % 3, n))
            assert held.status_code == 201, held.text
            holds.append(held.json())
        assert await remaining(client, tenant, session["id"]) == 20 - sum(h["spots"] for h in holds)

        async def race(h: dict) -> tuple[httpx.Response, httpx.Response]:
            rid = h["reservation_id"]
            done, gone = await asyncio.gather(c.post(f"{base}/{rid}/checkout", json={"customer": CUSTOMER}),
                                              c.delete(f"{base}/{rid}"))
            return done, gone

        outcomes = await asyncio.gather(*(race(h) for h in holds))

    booked_spots = 0
    booked_ids = set()
    for h, (done, gone) in zip(holds, outcomes):
        assert_no_server_error([done, gone])
        if done.status_code == 201:  # checkout won: the release is refused, the hold is a booking
            assert gone.status_code == 409 and gone.json()["code"] == "reservation_converted", gone.text
            booked_spots += h["spots"]
            booked_ids.add(done.json()["booking"]["id"])
        else:  # release won: checkout finds the hold gone
            assert gone.status_code == 204, gone.text
            assert done.status_code == 410 and done.json()["code"] == "reservation_expired", done.text

    assert await remaining(client, tenant, session["id"]) == 20 - booked_spots
    assert {b["id"] for b in await session_bookings(client, tenant, activity["id"])} == booked_ids
    await assert_doctor_ok()


# --------------------------------------------------------------------------------------------
# The doctor itself
# --------------------------------------------------------------------------------------------
async def test_doctor_reports_a_session_whose_capacity_does_not_add_up(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=5)
    session = await future_session(client, tenant, activity)
    held = await hold(client, tenant, session["id"], spots=2)
    assert held.status_code == 201, held.text
    where = "organization_id = CAST(:org AS uuid) AND id = CAST(:id AS uuid)"
    key = {"org": tenant.organization_id, "id": session["id"]}

    with owner_engine.begin() as conn:  # a lost update: one spot gone that nobody holds
        changed = conn.execute(text(f"UPDATE activity_sessions SET capacity_remaining = capacity_remaining - 1 "
                                    f"WHERE {where}"), key).rowcount
    assert changed == 1
    try:
        code, output = await run_doctor()
        assert code != 0, output
        assert session["id"] in output, output
        assert "OK" not in output.splitlines()[-1], output
    finally:
        with owner_engine.begin() as conn:
            conn.execute(text(f"UPDATE activity_sessions SET capacity_remaining = capacity_remaining + 1 "
                              f"WHERE {where}"), key)
    assert await remaining(client, tenant, session["id"]) == 3
    await assert_doctor_ok()
