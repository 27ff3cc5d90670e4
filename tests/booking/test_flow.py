"""The booking flow as a customer and staff meet it, through the API."""

from tests.factories import book, checkout, future_session, hold, make_activity


async def test_hold_checkout_confirms_a_booking_and_takes_capacity(client, tenant):
    activity = await make_activity(client, tenant, capacity=6, price_amount=3000)
    session = await future_session(client, tenant, activity)

    held = await hold(client, tenant, session["id"], spots=2)
    assert held.status_code == 201
    assert set(held.json()) == {"reservation_id", "session_id", "spots", "expires_at"}

    done = await checkout(client, tenant, held.json()["reservation_id"])
    assert done.status_code == 201, done.text
    booking = done.json()["booking"]
    assert booking["status"] == "confirmed"
    assert booking["total_amount"] == 6000 and booking["currency"] == "USD"
    assert done.json()["payment"] == {"provider": "offline", "status": "pending", "checkout_url": None}

    listed = await client.get(f"/v1/sessions/{session['id']}", headers=tenant.headers)
    assert listed.json()["capacity_remaining"] == 4


async def test_cancel_returns_capacity_and_cannot_happen_twice(client, tenant):
    activity = await make_activity(client, tenant, capacity=5)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], spots=3)

    first = await client.post(f"/v1/bookings/{booking['id']}/cancel", headers=tenant.headers, json={})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "cancelled"
    second = await client.post(f"/v1/bookings/{booking['id']}/cancel", headers=tenant.headers, json={})
    assert second.status_code == 409 and second.json()["code"] == "already_cancelled"

    after = await client.get(f"/v1/sessions/{session['id']}", headers=tenant.headers)
    assert after.json()["capacity_remaining"] == 5
