"""A customer looks up and cancels their own booking with its reference and their email. A wrong
email must not tell them whether the reference exists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from tests.factories import book, future_session, make_activity


def without_instance(problem: dict) -> dict:
    return {k: v for k, v in problem.items() if k != "instance"}


async def test_lookup_and_cancel_with_reference_and_email(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=6, price_amount=3000, full_refund_hours=24)
    session = await future_session(client, tenant, activity, days_ahead=4)
    booking = await book(client, tenant, session["id"], spots=2, email="Dana.Diaz@Example.com")
    reference = booking["reference"]
    path = f"/v1/public/bookings/{reference}"

    wrong_email = await client.get(path, params={"email": "mallory@example.com"})
    unknown_ref = await client.get("/v1/public/bookings/ZZZZZ-ZZZZZ", params={"email": "dana.diaz@example.com"})
    assert wrong_email.status_code == unknown_ref.status_code == 404
    assert without_instance(wrong_email.json()) == without_instance(unknown_ref.json())
    assert wrong_email.json()["code"] == "booking_not_found"
    assert reference not in str(without_instance(wrong_email.json()))

    shown = await client.get(path, params={"email": "DANA.diaz@example.COM"})
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["booking_reference"] == reference and body["status"] == "confirmed"
    assert body["guest_count"] == 2 and body["total_amount"] == 6000
    assert datetime.fromisoformat(body["start_time"]) == datetime.fromisoformat(session["start_time"])
    assert datetime.fromisoformat(body["end_time"]) == datetime.fromisoformat(session["end_time"])
    assert "customer_email" not in body and "notes" not in body

    refused = await client.post(f"{path}/cancel", json={"email": "mallory@example.com"})
    unknown = await client.post("/v1/public/bookings/ZZZZZ-ZZZZZ/cancel", json={"email": "dana.diaz@example.com"})
    assert refused.status_code == unknown.status_code == 404
    assert without_instance(refused.json()) == without_instance(unknown.json())
    assert (await client.get(path, params={"email": "dana.diaz@example.com"})).json()["status"] == "confirmed"

    # The customer paid at the venue (offline provider; staff recorded it as paid).
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE bookings SET payment_status = 'paid' WHERE id = :id"), {"id": booking["id"]})
    cancelled = await client.post(f"{path}/cancel", json={"email": "dana.diaz@EXAMPLE.com"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["refund_amount"] == 6000  # four days ahead, full refund up to 24 hours before
    assert cancelled.json()["payment_status"] == "refunded"
    after = (await client.get(path, params={"email": "dana.diaz@example.com"})).json()
    assert after["status"] == "cancelled" and after["refund_amount"] == 6000 and after["cancelled_at"]
    assert datetime.fromisoformat(after["start_time"]) == datetime.fromisoformat(session["start_time"])


async def test_unpaid_offline_booking_cancels_with_nothing_to_refund(client, tenant):
    activity = await make_activity(client, tenant, capacity=6, price_amount=3000, full_refund_hours=24)
    session = await future_session(client, tenant, activity, days_ahead=4)
    booking = await book(client, tenant, session["id"], spots=1, email="ed@example.com")
    cancelled = await client.post(f"/v1/public/bookings/{booking['reference']}/cancel", json={"email": "ED@example.com"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["refund_amount"] == 0
    assert cancelled.json()["cancellation_policy"]["applied"]["refund_percent"] == 100
