"""`Idempotency-Key` on creating POSTs: a retry answers like the first request and creates nothing
new, even when the retries race each other."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from tests.factories import future_session, hold, make_activity, unique

CUSTOMER = {"email": "idem@example.com", "first_name": "Ida", "last_name": "Empotent"}


def count(owner_engine, sql: str, **params) -> int:
    with owner_engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def keyed(headers: dict | None = None, key: str | None = None) -> dict:
    return {**(headers or {}), "Idempotency-Key": key or f"key-{uuid.uuid4()}"}


def assert_replay(first, second) -> None:
    assert second.status_code == first.status_code, second.text
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.headers.get("idempotent-replayed") is None


def assert_key_reused(response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "idempotency_key_reused"


async def remaining(client, tenant, session_id: str) -> int:
    return (await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)).json()["capacity_remaining"]


def hold_url(tenant) -> str:
    return f"/v1/public/venues/{tenant.embed_key}/reservations"


async def test_hold_retry_is_replayed_and_takes_capacity_once(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    headers = keyed()
    body = {"session_id": session["id"], "spots": 3, "customer_email": "idem@example.com"}

    first = await client.post(hold_url(tenant), headers=headers, json=body)
    assert first.status_code == 201, first.text
    second = await client.post(hold_url(tenant), headers=headers, json=body)
    assert_replay(first, second)
    assert count(owner_engine, "SELECT count(*) FROM slot_reservations WHERE session_id = :s", s=session["id"]) == 1
    assert await remaining(client, tenant, session["id"]) == 7

    changed = await client.post(hold_url(tenant), headers=headers, json={**body, "spots": 4})
    assert_key_reused(changed)
    assert count(owner_engine, "SELECT count(*) FROM slot_reservations WHERE session_id = :s", s=session["id"]) == 1
    assert await remaining(client, tenant, session["id"]) == 7

    # A different key is a different request.
    other = await client.post(hold_url(tenant), headers=keyed(), json=body)
    assert other.status_code == 201 and other.json()["reservation_id"] != first.json()["reservation_id"]
    assert await remaining(client, tenant, session["id"]) == 4


async def test_checkout_retry_is_replayed_and_books_once(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=10, price_amount=1500)
    session = await future_session(client, tenant, activity)
    held = await hold(client, tenant, session["id"], spots=2, email=CUSTOMER["email"])
    url = f"{hold_url(tenant)}/{held.json()['reservation_id']}/checkout"
    headers = keyed()

    first = await client.post(url, headers=headers, json={"customer": CUSTOMER})
    assert first.status_code == 201, first.text
    second = await client.post(url, headers=headers, json={"customer": CUSTOMER})
    assert_replay(first, second)
    assert second.json()["booking"]["total_amount"] == 3000
    org = tenant.organization_id
    assert count(owner_engine, "SELECT count(*) FROM bookings WHERE organization_id = :o", o=org) == 1
    assert count(owner_engine, "SELECT count(*) FROM customers WHERE organization_id = :o", o=org) == 1
    assert count(owner_engine, "SELECT total_bookings FROM customers WHERE organization_id = :o", o=org) == 1
    assert count(owner_engine, "SELECT count(*) FROM payments WHERE organization_id = :o", o=org) == 1
    assert await remaining(client, tenant, session["id"]) == 8

    changed = await client.post(url, headers=headers, json={"customer": {**CUSTOMER, "first_name": "Other"}})
    assert_key_reused(changed)
    # Without the key a second checkout of the same hold is refused, not a second booking.
    again = await client.post(url, json={"customer": CUSTOMER})
    assert again.status_code == 409 and again.json()["code"] == "reservation_converted"
    assert count(owner_engine, "SELECT count(*) FROM bookings WHERE organization_id = :o", o=org) == 1


async def test_staff_booking_retry_is_replayed_and_books_once(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    headers = keyed(tenant.headers)
    body = {"session_id": session["id"], "guest_count": 4, "customer": CUSTOMER, "notes": "phone booking"}

    first = await client.post("/v1/bookings", headers=headers, json=body)
    assert first.status_code == 201, first.text
    second = await client.post("/v1/bookings", headers=headers, json=body)
    assert_replay(first, second)
    assert count(owner_engine, "SELECT count(*) FROM bookings WHERE session_id = :s", s=session["id"]) == 1
    assert await remaining(client, tenant, session["id"]) == 6
    assert_key_reused(await client.post("/v1/bookings", headers=headers, json={**body, "guest_count": 5}))
    assert await remaining(client, tenant, session["id"]) == 6


async def test_venue_and_activity_retries_create_one_each(client, tenant, owner_engine):
    org = tenant.organization_id
    name = unique("Venue")
    headers = keyed(tenant.headers)
    venue_body = {"name": name, "timezone": "Europe/Paris", "city": "Paris"}
    first = await client.post("/v1/venues", headers=headers, json=venue_body)
    assert first.status_code == 201, first.text
    assert_replay(first, await client.post("/v1/venues", headers=headers, json=venue_body))
    assert count(owner_engine, "SELECT count(*) FROM venues WHERE organization_id = :o AND name = :n", o=org, n=name) == 1
    assert_key_reused(await client.post("/v1/venues", headers=headers, json={**venue_body, "city": "Lyon"}))

    name = unique("Activity")
    headers = keyed(tenant.headers)
    activity_body = {"venue_id": tenant.venue_id, "name": name, "duration_minutes": 45, "capacity": 6,
                     "price_amount": 2000, "schedule": {"weekly": [{"days": ["sat"], "times": ["10:00"]}]}}
    first = await client.post("/v1/activities", headers=headers, json=activity_body)
    assert first.status_code == 201, first.text
    sessions = count(owner_engine, "SELECT count(*) FROM activity_sessions WHERE activity_id = :a", a=first.json()["id"])
    assert sessions > 0
    assert_replay(first, await client.post("/v1/activities", headers=headers, json=activity_body))
    assert count(owner_engine, "SELECT count(*) FROM activities WHERE organization_id = :o AND name = :n",
                 o=org, n=name) == 1
    assert count(owner_engine, "SELECT count(*) FROM activity_sessions WHERE organization_id = :o", o=org) == sessions
    assert_key_reused(await client.post("/v1/activities", headers=headers, json={**activity_body, "capacity": 7}))


async def test_platform_organization_retry_creates_one(client, platform_admin, owner_engine):
    slug = unique("idem")
    body = {"name": f"Org {slug}", "slug": slug, "plan": "enterprise", "timezone": "Europe/Berlin",
            "owner": {"email": f"owner@{slug}.example.com", "full_name": "Owner", "password": "Correct-Horse-9-Battery"}}
    headers = keyed(platform_admin.headers)
    first = await client.post("/v1/platform/organizations", headers=headers, json=body)
    assert first.status_code == 201, first.text
    assert_replay(first, await client.post("/v1/platform/organizations", headers=headers, json=body))
    assert count(owner_engine, "SELECT count(*) FROM organizations WHERE slug = :s", s=slug) == 1
    assert count(owner_engine, "SELECT count(*) FROM users WHERE email = :e", e=body["owner"]["email"]) == 1
    assert count(owner_engine, "SELECT count(*) FROM venues WHERE organization_id = :o",
                 o=first.json()["organization"]["id"]) == 1
    assert_key_reused(await client.post("/v1/platform/organizations", headers=headers, json={**body, "name": "Renamed"}))


async def test_concurrent_holds_with_one_key_make_one_hold(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    headers = keyed()
    body = {"session_id": session["id"], "spots": 2, "customer_email": "race@example.com"}
    responses = await asyncio.gather(*(client.post(hold_url(tenant), headers=headers, json=body) for _ in range(5)))
    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    assert len({r.json()["reservation_id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4
    assert count(owner_engine, "SELECT count(*) FROM slot_reservations WHERE session_id = :s", s=session["id"]) == 1
    assert await remaining(client, tenant, session["id"]) == 8


async def test_concurrent_staff_bookings_and_venues_with_one_key_make_one(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    headers = keyed(tenant.headers)
    body = {"session_id": session["id"], "guest_count": 3, "customer": CUSTOMER}
    responses = await asyncio.gather(*(client.post("/v1/bookings", headers=headers, json=body) for _ in range(5)))
    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert count(owner_engine, "SELECT count(*) FROM bookings WHERE session_id = :s", s=session["id"]) == 1
    assert await remaining(client, tenant, session["id"]) == 7

    name = unique("Race venue")
    headers = keyed(tenant.headers)
    responses = await asyncio.gather(*(client.post("/v1/venues", headers=headers,
                                                   json={"name": name, "timezone": "UTC"}) for _ in range(5)))
    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    assert count(owner_engine, "SELECT count(*) FROM venues WHERE organization_id = :o AND name = :n",
                 o=tenant.organization_id, n=name) == 1


async def test_a_failed_request_can_be_retried_with_its_key(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=2)
    session = await future_session(client, tenant, activity)
    blocker = await hold(client, tenant, session["id"], spots=2, email="first@example.com")
    assert blocker.status_code == 201

    headers = keyed()
    body = {"session_id": session["id"], "spots": 1, "customer_email": "second@example.com"}
    refused = await client.post(hold_url(tenant), headers=headers, json=body)
    assert refused.status_code == 409 and refused.json()["code"] == "sold_out"
    assert (await client.post(hold_url(tenant), headers=headers, json=body)).json()["code"] == "sold_out"

    released = await client.delete(f"{hold_url(tenant)}/{blocker.json()['reservation_id']}")
    assert released.status_code == 204
    retried = await client.post(hold_url(tenant), headers=headers, json=body)
    assert retried.status_code == 201, retried.text
    assert retried.headers.get("idempotent-replayed") is None
    assert_replay(retried, await client.post(hold_url(tenant), headers=headers, json=body))
    assert count(owner_engine, "SELECT count(*) FROM slot_reservations WHERE session_id = :s AND status = 'held'",
                 s=session["id"]) == 1
    assert await remaining(client, tenant, session["id"]) == 1


async def test_blank_idempotency_key_is_rejected(client, tenant):
    activity = await make_activity(client, tenant, capacity=4)
    session = await future_session(client, tenant, activity)
    response = await client.post(hold_url(tenant), headers={"Idempotency-Key": "   "},
                                 json={"session_id": session["id"], "spots": 1, "customer_email": "a@example.com"})
    assert response.status_code == 422 and response.json()["code"] == "validation_error"
    assert await remaining(client, tenant, session["id"]) == 4
