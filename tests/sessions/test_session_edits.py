"""Staff edits of one session: conditional requests on its version, capacity that never drops
below what customers hold, closing; and the optimistic-locking SQL function."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.factories import book, future_session, hold, make_activity


async def get_session(client, tenant, session_id: str):
    response = await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response


async def patch_session(client, tenant, session_id: str, body: dict, if_match: str | None):
    headers = dict(tenant.headers)
    if if_match is not None:
        headers["If-Match"] = if_match
    return await client.patch(f"/v1/sessions/{session_id}", headers=headers, json=body)


async def fresh_etag(client, tenant, session_id: str) -> str:
    return (await get_session(client, tenant, session_id)).headers["etag"]


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def stored(owner_engine, session_id: str):
    with owner_engine.connect() as conn:
        return conn.execute(text("SELECT capacity_total, capacity_remaining, version, is_closed "
                                 "FROM activity_sessions WHERE id = :id"), {"id": session_id}).one()


async def test_etag_is_the_version_and_if_match_is_enforced(client, tenant):
    activity = await make_activity(client, tenant, capacity=8)
    session = await future_session(client, tenant, activity)
    got = await get_session(client, tenant, session["id"])
    version = got.json()["version"]
    assert got.headers["etag"] == f'"{version}"'

    missing = await patch_session(client, tenant, session["id"], {"capacity_total": 9}, None)
    assert_problem(missing, 428, "precondition_required")

    ok = await patch_session(client, tenant, session["id"], {"capacity_total": 9}, f'"{version}"')
    assert ok.status_code == 200, ok.text
    assert ok.json()["version"] == version + 1 and ok.headers["etag"] == f'"{version + 1}"'
    assert (ok.json()["capacity_total"], ok.json()["capacity_remaining"]) == (9, 9)

    stale = await patch_session(client, tenant, session["id"], {"capacity_total": 3}, f'"{version}"')
    assert_problem(stale, 412, "version_conflict")
    garbage = await patch_session(client, tenant, session["id"], {"capacity_total": 3}, '"not-a-version"')
    assert garbage.status_code == 412
    after = await get_session(client, tenant, session["id"])
    assert after.json()["capacity_total"] == 9 and after.headers["etag"] == f'"{version + 1}"'

    # A booking moves the version on: the ETag read before it is stale.
    before_booking = after.headers["etag"]
    await book(client, tenant, session["id"], spots=1)
    assert_problem(await patch_session(client, tenant, session["id"], {"is_closed": True}, before_booking),
                   412, "version_conflict")
    assert (await get_session(client, tenant, session["id"])).json()["is_closed"] is False


async def test_capacity_edits_keep_remaining_consistent_and_never_go_below_booked(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    await book(client, tenant, session["id"], spots=3)
    held = await hold(client, tenant, session["id"], spots=2)
    assert held.status_code == 201
    assert (await get_session(client, tenant, session["id"])).json()["capacity_remaining"] == 5

    raised = await patch_session(client, tenant, session["id"], {"capacity_total": 15},
                                 await fresh_etag(client, tenant, session["id"]))
    assert raised.status_code == 200 and (raised.json()["capacity_total"], raised.json()["capacity_remaining"]) == (15, 10)

    lowered = await patch_session(client, tenant, session["id"], {"capacity_total": 5},
                                  await fresh_etag(client, tenant, session["id"]))
    assert lowered.status_code == 200 and (lowered.json()["capacity_total"], lowered.json()["capacity_remaining"]) == (5, 0)

    before = stored(owner_engine, session["id"])
    too_low = await patch_session(client, tenant, session["id"], {"capacity_total": 4},
                                  await fresh_etag(client, tenant, session["id"]))
    assert_problem(too_low, 409, "capacity_below_booked")
    assert stored(owner_engine, session["id"]) == before

    sold_out = await hold(client, tenant, session["id"], spots=1)
    assert_problem(sold_out, 409, "sold_out")

    # The hold checks out; capacity 5 = 5 booked.
    done = await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations/{held.json()['reservation_id']}/checkout",
                             json={"customer": {"email": "h@example.com", "first_name": "H", "last_name": "H"}})
    assert done.status_code == 201, done.text
    final = (await get_session(client, tenant, session["id"])).json()
    assert (final["capacity_total"], final["capacity_remaining"]) == (5, 0)


@pytest.mark.parametrize("body", [{"capacity_total": -1}, {"capacity_total": "ten"}, {}, {"capacity_total": 10_001},
                                  {"is_closed": "maybe"}, {"capacity_total": 5, "version": 1}])
async def test_bad_session_edits_are_422(client, tenant, body):
    activity = await make_activity(client, tenant, capacity=4)
    session = await future_session(client, tenant, activity)
    response = await patch_session(client, tenant, session["id"], body, await fresh_etag(client, tenant, session["id"]))
    assert_problem(response, 422, "validation_error")
    assert (await get_session(client, tenant, session["id"])).json()["capacity_total"] == 4


async def test_closing_a_session_hides_it_and_refuses_holds(client, tenant):
    activity = await make_activity(client, tenant, capacity=6)
    session = await future_session(client, tenant, activity)
    await book(client, tenant, session["id"], spots=2)
    closed = await patch_session(client, tenant, session["id"], {"is_closed": True},
                                 await fresh_etag(client, tenant, session["id"]))
    assert closed.status_code == 200 and closed.json()["is_closed"] is True

    start = session["start_time"][:10]
    public = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability",
                              params={"activity_id": activity["id"], "from": start, "to": start})
    assert session["id"] not in [s["id"] for s in public.json()["sessions"]]
    staff_view = await client.get("/v1/sessions", headers=tenant.headers,
                                  params={"activity_id": activity["id"], "available": "true"})
    assert session["id"] not in [s["id"] for s in staff_view.json()["items"]]

    assert_problem(await hold(client, tenant, session["id"], spots=1), 409, "session_closed")
    staff = await client.post("/v1/bookings", headers=tenant.headers, json={
        "session_id": session["id"], "guest_count": 1,
        "customer": {"email": "walkin@example.com", "first_name": "W", "last_name": "I"}})
    assert_problem(staff, 409, "session_closed")
    assert (await get_session(client, tenant, session["id"])).json()["capacity_remaining"] == 4

    reopened = await patch_session(client, tenant, session["id"], {"is_closed": False},
                                   await fresh_etag(client, tenant, session["id"]))
    assert reopened.status_code == 200
    public = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability",
                              params={"activity_id": activity["id"], "from": start, "to": start})
    assert session["id"] in [s["id"] for s in public.json()["sessions"]]
    assert (await hold(client, tenant, session["id"], spots=1)).status_code == 201


async def test_unknown_and_foreign_sessions_are_404(client, tenant, platform_admin):
    from tests.factories import make_tenant

    other = await make_tenant(client, platform_admin)
    activity = await make_activity(client, other, capacity=4)
    foreign = await future_session(client, other, activity)
    for session_id in (str(uuid.uuid4()), foreign["id"]):
        got = await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)
        assert_problem(got, 404, "session_not_found")
        edited = await patch_session(client, tenant, session_id, {"capacity_total": 1}, '"1"')
        assert edited.status_code == 404, edited.text
    assert (await get_session(client, other, foreign["id"])).json()["capacity_total"] == 4


# ---------------------------------------------------------------------------------------------
# reserve_session_capacity(p_session_id, p_spots, p_expected_version), as the database owner
# ---------------------------------------------------------------------------------------------
def reserve(owner_engine, session_id: str, spots: int, version: int):
    with owner_engine.begin() as conn:
        return tuple(conn.execute(text("SELECT success, new_version, remaining FROM reserve_session_capacity(:id, :n, :v)"),
                                  {"id": session_id, "n": spots, "v": version}).one())


def restore(owner_engine, session_id: str) -> None:
    """Gives back what the function took outside any reservation, so the capacity invariant holds."""
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE activity_sessions SET capacity_remaining = capacity_total WHERE id = :id"),
                     {"id": session_id})


async def test_reserve_session_capacity(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    sid = session["id"]
    try:
        total, remaining, version, _ = stored(owner_engine, sid)
        assert (total, remaining) == (10, 10)

        assert reserve(owner_engine, sid, 3, version) == (True, version + 1, 7)
        assert stored(owner_engine, sid)[1:3] == (7, version + 1)

        assert reserve(owner_engine, sid, 1, version) == (False, version + 1, 7), "a stale version"
        assert stored(owner_engine, sid)[1:3] == (7, version + 1)

        assert reserve(owner_engine, sid, 8, version + 1) == (False, version + 1, 7), "more than is left"
        assert stored(owner_engine, sid)[1:3] == (7, version + 1)

        for bad in (0, -2):
            with pytest.raises(DBAPIError) as raised:
                reserve(owner_engine, sid, bad, version + 1)
            assert "spots must be positive" in str(raised.value)
        assert stored(owner_engine, sid)[1:3] == (7, version + 1)

        assert reserve(owner_engine, sid, 7, version + 1) == (True, version + 2, 0), "exactly what is left"
        assert stored(owner_engine, sid)[1:3] == (0, version + 2)
        assert reserve(owner_engine, str(uuid.uuid4()), 1, 1) == (False, None, None)
    finally:
        restore(owner_engine, sid)


async def test_an_inactive_activity_takes_no_holds(client, tenant):
    activity = await make_activity(client, tenant, capacity=6)
    kept = await future_session(client, tenant, activity)
    await book(client, tenant, kept["id"], spots=1)  # a session with a booking stays when the activity pauses
    dropped = await future_session(client, tenant, activity, days_ahead=5)
    paused = await client.patch(f"/v1/activities/{activity['id']}", headers=tenant.headers, json={"is_active": False})
    assert paused.status_code == 200 and paused.json()["is_active"] is False, paused.text

    assert_problem(await hold(client, tenant, kept["id"], spots=1), 409, "activity_unavailable")
    assert (await get_session(client, tenant, kept["id"])).json()["capacity_remaining"] == 5
    assert_problem(await hold(client, tenant, dropped["id"], spots=1), 404, "session_not_found")
