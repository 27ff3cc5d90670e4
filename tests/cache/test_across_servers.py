"""Two real server processes on one database and one Redis: a change made through one is what the
other answers next, with no wait for a TTL (the caches and their invalidations live in Redis)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.factories import PASSWORD, add_staff, bearer, future_session, make_activity, make_tenant

NEW_PASSWORD = "Another-Horse-7-Battery"


@pytest.fixture(scope="module")
def servers():
    first = LiveServer()
    try:
        second = LiveServer()
    except Exception:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
async def a_and_b(servers):
    async with httpx.AsyncClient(base_url=servers[0].url, timeout=10) as a, \
            httpx.AsyncClient(base_url=servers[1].url, timeout=10) as b:
        yield a, b


async def seen(http: httpx.AsyncClient, tenant, session_id: str) -> dict:
    response = await http.get(f"/v1/public/venues/{tenant.embed_key}/availability")
    assert response.status_code == 200, response.text
    return {s["id"]: s for s in response.json()["sessions"]}[session_id]


async def test_a_hold_on_one_server_shows_on_the_other_at_once(client, tenant, a_and_b, owner_engine):
    a, b = a_and_b
    activity = await make_activity(client, tenant, capacity=8)
    sid = (await future_session(client, tenant, activity))["id"]
    assert (await seen(b, tenant, sid))["capacity_remaining"] == 8
    with owner_engine.begin() as conn:  # behind the app's back: B keeps answering from its cache
        conn.execute(text("UPDATE activity_sessions SET price_at_generation = 4321 WHERE id = :s"), {"s": sid})
    assert (await seen(b, tenant, sid))["price_amount"] != 4321

    held = await a.post(f"/v1/public/venues/{tenant.embed_key}/reservations",
                        json={"session_id": sid, "spots": 3, "customer_email": "a@example.com"})
    assert held.status_code == 201, held.text
    after = await seen(b, tenant, sid)
    assert (after["capacity_remaining"], after["price_amount"]) == (5, 4321)

    released = await b.delete(f"/v1/public/venues/{tenant.embed_key}/reservations/{held.json()['reservation_id']}")
    assert released.status_code == 204
    assert (await seen(a, tenant, sid))["capacity_remaining"] == 8

    etag = (await a.get(f"/v1/sessions/{sid}", headers=tenant.headers)).headers["etag"]
    edited = await a.patch(f"/v1/sessions/{sid}", json={"is_closed": True}, headers={**tenant.headers, "If-Match": etag})
    assert edited.status_code == 200, edited.text
    response = await b.get(f"/v1/public/venues/{tenant.embed_key}/availability")
    assert sid not in [s["id"] for s in response.json()["sessions"]]


async def test_suspension_through_one_server_stops_the_widget_on_the_other(client, platform_admin, a_and_b):
    a, b = a_and_b
    tenant = await make_tenant(client, platform_admin)
    page = f"/v1/public/venues/{tenant.embed_key}"
    assert (await b.get(page)).status_code == 200  # B has the embed key cached
    org = f"/v1/platform/organizations/{tenant.organization_id}"
    assert (await a.patch(org, headers=platform_admin.headers, json={"status": "suspended"})).status_code == 200
    refused = await b.get(page)
    assert refused.status_code == 403 and refused.json()["code"] == "organization_suspended", refused.text
    assert (await a.patch(org, headers=platform_admin.headers, json={"status": "active"})).status_code == 200
    assert (await b.get(page)).status_code == 200


async def test_role_changes_deactivation_and_password_changes_apply_on_every_server_at_once(client, tenant, a_and_b):
    """User permissions are cached for 5 minutes (PRD 3.3.1) and forgotten on every change."""
    a, b = a_and_b
    token = await add_staff(client, tenant, "manager")
    me = (await b.get("/v1/me", headers=bearer(token))).json()
    assert (await b.get("/v1/users", headers=bearer(token))).status_code == 403  # B caches "manager"

    promoted = await a.patch(f"/v1/users/{me['id']}", headers=tenant.headers, json={"role": "admin"})
    assert promoted.status_code == 200, promoted.text
    assert (await b.get("/v1/users", headers=bearer(token))).status_code == 200

    changed = await a.post("/v1/auth/password", headers=bearer(token),
                           json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert changed.status_code == 204, changed.text
    assert (await b.get("/v1/me", headers=bearer(token))).status_code == 401

    login = await b.post("/v1/auth/login", json={"email": me["email"], "password": NEW_PASSWORD})
    fresh = bearer(login.json()["access_token"])
    assert (await b.get("/v1/me", headers=fresh)).status_code == 200  # cached again on B
    assert (await a.delete(f"/v1/users/{me['id']}", headers=tenant.headers)).status_code == 204
    assert (await b.get("/v1/me", headers=fresh)).status_code == 401
