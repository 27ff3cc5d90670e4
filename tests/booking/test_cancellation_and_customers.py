"""Customers, booking references, server-side totals, cancellation policy and check-in, as staff
and customers meet them."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import text

from tests.factories import book, future_session, make_activity, make_tenant

REFERENCE = re.compile(r"^[A-HJ-NP-Z2-9]{5}-[A-HJ-NP-Z2-9]{5}$")


def customer(email: str, first: str = "Carol", last: str = "Case") -> dict:
    return {"email": email, "first_name": first, "last_name": last}


async def staff_book(client, tenant, session_id: str, guests: int, email: str, **extra) -> dict:
    response = await client.post("/v1/bookings", headers=tenant.headers, json={
        "session_id": session_id, "guest_count": guests, "customer": customer(email), **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def cancel(client, tenant, booking_id: str, **body):
    return await client.post(f"/v1/bookings/{booking_id}/cancel", headers=tenant.headers, json=body)


async def remaining(client, tenant, session_id: str) -> int:
    return (await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)).json()["capacity_remaining"]


def without_instance(problem: dict) -> dict:
    return {k: v for k, v in problem.items() if k != "instance"}


async def test_customers_are_one_per_email_and_totals_follow_bookings(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=10, price_amount=2000)
    first = await future_session(client, tenant, activity, days_ahead=3)
    second = await future_session(client, tenant, activity, days_ahead=4)

    widget_a = await book(client, tenant, first["id"], spots=2, email="Carol.Case@Example.com")
    widget_b = await book(client, tenant, second["id"], spots=1, email="carol.case@example.com")
    staff = await staff_book(client, tenant, first["id"], 3, "CAROL.CASE@EXAMPLE.COM")
    other = await book(client, tenant, second["id"], spots=1, email="someone.else@example.com")
    assert (widget_a["total_amount"], widget_b["total_amount"], staff["total_amount"]) == (4000, 2000, 6000)

    found = await client.get("/v1/customers", headers=tenant.headers, params={"q": "CAROL.case"})
    assert found.status_code == 200
    items = found.json()["items"]
    assert len(items) == 1, items
    carol = items[0]
    assert carol["email"] == "carol.case@example.com"
    assert (carol["total_bookings"], carol["total_spent"]) == (3, 12000)
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers WHERE organization_id = :o AND lower(email) = :e"),
                            {"o": tenant.organization_id, "e": "carol.case@example.com"}).scalar_one() == 1

    assert (await cancel(client, tenant, widget_b["id"])).status_code == 200
    got = (await client.get(f"/v1/customers/{carol['id']}", headers=tenant.headers)).json()
    assert (got["total_bookings"], got["total_spent"]) == (2, 10000)
    assert (await cancel(client, tenant, staff["id"], refund="none")).status_code == 200
    got = (await client.get(f"/v1/customers/{carol['id']}", headers=tenant.headers)).json()
    assert (got["total_bookings"], got["total_spent"]) == (1, 4000)
    # A second cancel is refused and does not count twice.
    assert (await cancel(client, tenant, staff["id"])).status_code == 409
    got = (await client.get(f"/v1/customers/{carol['id']}", headers=tenant.headers)).json()
    assert (got["total_bookings"], got["total_spent"]) == (1, 4000)

    everyone = (await client.get("/v1/customers", headers=tenant.headers)).json()["items"]
    assert sorted(c["email"] for c in everyone) == ["carol.case@example.com", "someone.else@example.com"]
    assert other["total_amount"] == 2000


async def test_references_are_unique_readable_and_found_by_staff(client, tenant, platform_admin):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    bookings = [await book(client, tenant, session["id"], email=f"ref{i}@example.com") for i in range(4)]
    bookings.append(await staff_book(client, tenant, session["id"], 1, "ref-staff@example.com"))
    references = [b.get("reference") or b["booking_reference"] for b in bookings]
    assert len(set(references)) == len(references)
    for reference in references:
        assert REFERENCE.match(reference), reference

    for booking, reference in zip(bookings, references):
        for spelling in (reference, reference.lower()):
            found = await client.get(f"/v1/bookings/by-reference/{spelling}", headers=tenant.headers)
            assert found.status_code == 200, found.text
            assert found.json()["id"] == booking["id"] and found.json()["booking_reference"] == reference

    missing = await client.get("/v1/bookings/by-reference/ZZZZZ-ZZZZZ", headers=tenant.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "booking_not_found"
    stranger = await make_tenant(client, platform_admin)
    foreign = await client.get(f"/v1/bookings/by-reference/{references[0]}", headers=stranger.headers)
    assert foreign.status_code == 404


async def test_totals_come_from_the_session_price(client, tenant):
    activity = await make_activity(client, tenant, capacity=10, price_amount=1250)
    session = await future_session(client, tenant, activity)
    staff = await staff_book(client, tenant, session["id"], 3, "t@example.com")
    assert (staff["total_amount"], staff["unit_price_amount"], staff["subtotal_amount"]) == (3750, 1250, 3750)
    assert staff["currency"] == "USD" and staff["guest_count"] == 3
    widget = await book(client, tenant, session["id"], spots=2, email="w@example.com")
    assert widget["total_amount"] == 2500

    refused = await client.post("/v1/bookings", headers=tenant.headers, json={
        "session_id": session["id"], "guest_count": 1, "customer": customer("cheap@example.com"), "total_amount": 1})
    assert refused.status_code == 422

    # A new price reaches the untouched sessions; the booked one keeps the price it was sold at.
    patched = await client.patch(f"/v1/activities/{activity['id']}", headers=tenant.headers, json={"price_amount": 4000})
    assert patched.status_code == 200
    later = await future_session(client, tenant, activity, days_ahead=5)
    assert later["price_amount"] == 4000
    assert (await staff_book(client, tenant, later["id"], 2, "t@example.com"))["total_amount"] == 8000
    assert (await staff_book(client, tenant, session["id"], 2, "t@example.com"))["total_amount"] == 2500


async def test_cancellation_policy_is_recorded_and_applied(client, tenant):
    lenient = await make_activity(client, tenant, capacity=10, full_refund_hours=24)
    strict = await make_activity(client, tenant, capacity=10, full_refund_hours=24 * 30)
    early = await future_session(client, tenant, lenient, days_ahead=3)
    late = await future_session(client, tenant, strict, days_ahead=3)

    booking = await staff_book(client, tenant, early["id"], 2, "p@example.com")
    assert booking["cancellation_policy"] == {"full_refund_hours": 24}
    done = await cancel(client, tenant, booking["id"], reason="plans changed")
    assert done.status_code == 200, done.text
    cancelled = done.json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"]
    assert cancelled["cancellation_policy"]["full_refund_hours"] == 24
    assert cancelled["cancellation_policy"]["applied"]["refund_percent"] == 100
    assert cancelled["cancellation_policy"]["applied"]["mode"] == "policy"
    assert (await client.get(f"/v1/bookings/{booking['id']}", headers=tenant.headers)).json()["status"] == "cancelled"

    within = await staff_book(client, tenant, late["id"], 2, "p@example.com")
    assert within["cancellation_policy"] == {"full_refund_hours": 720}
    applied = (await cancel(client, tenant, within["id"])).json()["cancellation_policy"]["applied"]
    assert applied["refund_percent"] == 0

    # Staff override the policy either way.
    forced_full = await staff_book(client, tenant, late["id"], 1, "p@example.com")
    applied = (await cancel(client, tenant, forced_full["id"], refund="full")).json()["cancellation_policy"]["applied"]
    assert (applied["refund_percent"], applied["mode"]) == (100, "full")
    forced_none = await staff_book(client, tenant, early["id"], 1, "p@example.com")
    applied = (await cancel(client, tenant, forced_none["id"], refund="none")).json()["cancellation_policy"]["applied"]
    assert (applied["refund_percent"], applied["mode"]) == (0, "none")
    bad = await cancel(client, tenant, (await staff_book(client, tenant, early["id"], 1, "p@example.com"))["id"],
                       refund="half")
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"

    # A later change of the activity's policy does not rewrite what was agreed.
    kept = await staff_book(client, tenant, early["id"], 1, "p@example.com")
    patched = await client.patch(f"/v1/activities/{lenient['id']}", headers=tenant.headers,
                                 json={"cancellation_policy": {"full_refund_hours": 24 * 30}})
    assert patched.status_code == 200
    applied = (await cancel(client, tenant, kept["id"])).json()["cancellation_policy"]["applied"]
    assert applied["refund_percent"] == 100
    assert await remaining(client, tenant, early["id"]) == 9  # the one booking the 422 left confirmed


async def test_customer_self_service_needs_the_right_email(client, tenant):
    activity = await make_activity(client, tenant, capacity=6)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], spots=2, email="Dana@Example.com")
    reference = booking["reference"]
    assert await remaining(client, tenant, session["id"]) == 4

    shown = await client.get(f"/v1/public/bookings/{reference}", params={"email": "dana@EXAMPLE.com"})
    assert shown.status_code == 200, shown.text
    assert shown.json()["booking_reference"] == reference and shown.json()["status"] == "confirmed"
    assert shown.json()["reference"] == reference  # the name the checkout answer gives it
    staff = (await client.get(f"/v1/bookings/{booking['id']}", headers=tenant.headers)).json()
    assert staff["reference"] == staff["booking_reference"] == reference
    assert "customer_email" not in shown.json()

    unknown = await client.get("/v1/public/bookings/ZZZZZ-ZZZZZ", params={"email": "dana@example.com"})
    wrong = await client.get(f"/v1/public/bookings/{reference}", params={"email": "mallory@example.com"})
    assert unknown.status_code == wrong.status_code == 404
    assert without_instance(unknown.json()) == without_instance(wrong.json())

    unknown = await client.post("/v1/public/bookings/ZZZZZ-ZZZZZ/cancel", json={"email": "dana@example.com"})
    wrong = await client.post(f"/v1/public/bookings/{reference}/cancel", json={"email": "mallory@example.com"})
    assert unknown.status_code == wrong.status_code == 404
    assert without_instance(unknown.json()) == without_instance(wrong.json())
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"/v1/bookings/{booking['id']}", headers=tenant.headers)).json()["status"] == "confirmed"
    assert await remaining(client, tenant, session["id"]) == 4

    done = await client.post(f"/v1/public/bookings/{reference.lower()}/cancel", json={"email": "DANA@example.COM"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "cancelled"
    assert done.json()["cancellation_policy"]["applied"]["refund_percent"] == 100
    assert await remaining(client, tenant, session["id"]) == 6
    again = await client.post(f"/v1/public/bookings/{reference}/cancel", json={"email": "dana@example.com"})
    assert again.status_code == 409 and again.json()["code"] == "already_cancelled"
    staff = await client.get(f"/v1/bookings/{booking['id']}", headers=tenant.headers)
    assert staff.json()["status"] == "cancelled" and staff.json()["cancelled_by"] == "customer"


async def test_customer_cannot_cancel_after_the_start(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=6, full_refund_hours=0)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], spots=2, email="late@example.com")
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE activity_sessions SET start_time = now() - interval '5 minutes', "
                          "end_time = now() + interval '55 minutes' WHERE id = :s"), {"s": session["id"]})
    refused = await client.post(f"/v1/public/bookings/{booking['reference']}/cancel", json={"email": "late@example.com"})
    assert refused.status_code == 409 and refused.json()["code"] == "session_started"
    assert (await client.get(f"/v1/bookings/{booking['id']}", headers=tenant.headers)).json()["status"] == "confirmed"
    assert await remaining(client, tenant, session["id"]) == 4


async def test_check_in_once_and_never_for_a_cancelled_booking(client, tenant):
    activity = await make_activity(client, tenant, capacity=6)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], spots=2)

    first = await client.post(f"/v1/bookings/{booking['id']}/check-in", headers=tenant.headers)
    assert first.status_code == 200, first.text
    assert first.json()["checked_in_at"]
    second = await client.post(f"/v1/bookings/{booking['id']}/check-in", headers=tenant.headers)
    assert second.status_code == 409 and second.json()["code"] == "already_checked_in"
    assert (await client.get(f"/v1/bookings/{booking['id']}", headers=tenant.headers)).json()["checked_in_at"] == \
        first.json()["checked_in_at"]

    other = await book(client, tenant, session["id"], spots=1)
    assert (await cancel(client, tenant, other["id"])).status_code == 200
    refused = await client.post(f"/v1/bookings/{other['id']}/check-in", headers=tenant.headers)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"/v1/bookings/{other['id']}", headers=tenant.headers)).json()["checked_in_at"] is None
    missing = await client.post(f"/v1/bookings/{uuid.uuid4()}/check-in", headers=tenant.headers)
    assert missing.status_code == 404


async def test_cancelled_capacity_can_be_booked_again(client, tenant):
    activity = await make_activity(client, tenant, capacity=3)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], spots=3, email="full@example.com")
    sold_out = await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations",
                                 json={"session_id": session["id"], "spots": 1, "customer_email": "next@example.com"})
    assert sold_out.status_code == 409 and sold_out.json()["code"] == "sold_out"
    assert (await cancel(client, tenant, booking["id"])).status_code == 200
    assert await remaining(client, tenant, session["id"]) == 3
    again = await book(client, tenant, session["id"], spots=3, email="next@example.com")
    assert again["status"] == "confirmed"
    assert await remaining(client, tenant, session["id"]) == 0
