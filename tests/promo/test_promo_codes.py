"""Promo codes: managed by admins (audited), case-insensitive, applied at checkout within their
window, limit and activities; the last redemption goes to exactly one of two concurrent checkouts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.factories import future_session, hold, make_activity, unique


def customer(email: str) -> dict:
    return {"email": email, "first_name": "Pat", "last_name": "Promo"}


async def checkout_with(client, tenant, reservation_id: str, email: str, code: str | None):
    body = {"customer": customer(email)}
    if code is not None:
        body["promo_code"] = code
    return await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations/{reservation_id}/checkout",
                             json=body)


async def new_code(client, tenant, **fields) -> dict:
    body = {"code": unique("save").replace("-", ""), "discount_type": "percent", "discount_value": 20, **fields}
    response = await client.post("/v1/promo-codes", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def held(client, tenant, session_id: str, email: str, spots: int = 2) -> str:
    response = await hold(client, tenant, session_id, spots, email)
    assert response.status_code == 201, response.text
    return response.json()["reservation_id"]


def times_redeemed(owner_engine, promo_id: str) -> int:
    with owner_engine.connect() as conn:
        return conn.execute(text("SELECT times_redeemed FROM promo_codes WHERE id = :i"), {"i": promo_id}).scalar()


def count_bookings(owner_engine, org_id: str) -> int:
    with owner_engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM bookings WHERE organization_id = :o"), {"o": org_id}).scalar()


async def test_manage_promo_codes_case_insensitive_and_audited(client, tenant, owner_engine):
    activity = await make_activity(client, tenant)
    created = await client.post("/v1/promo-codes", headers=tenant.headers, json={
        "code": "summer-25", "description": "Summer sale", "discount_type": "amount", "discount_value": 500,
        "currency": "USD", "max_redemptions": 3, "activity_ids": [activity["id"]],
        "valid_until": (datetime.now(UTC) + timedelta(days=30)).isoformat()})
    assert created.status_code == 201, created.text
    promo = created.json()
    assert promo["code"] == "SUMMER-25" and promo["times_redeemed"] == 0 and promo["redemptions_remaining"] == 3
    assert promo["activity_ids"] == [activity["id"]] and promo["is_active"] is True

    again = await client.post("/v1/promo-codes", headers=tenant.headers, json={
        "code": "Summer-25", "discount_type": "percent", "discount_value": 10})
    assert again.status_code == 409 and again.json()["code"] == "promo_code_exists", again.text

    for bad in ({"discount_type": "percent", "discount_value": 101}, {"discount_type": "amount", "discount_value": 5},
                {"discount_type": "percent", "discount_value": 0},
                {"discount_type": "percent", "discount_value": 5, "valid_from": "2030-01-02T00:00:00Z",
                 "valid_until": "2030-01-01T00:00:00Z"}):
        response = await client.post("/v1/promo-codes", headers=tenant.headers, json={"code": unique("x"), **bad})
        assert response.status_code == 422, (bad, response.text)

    listed = await client.get("/v1/promo-codes", headers=tenant.headers)
    assert listed.status_code == 200 and [p["code"] for p in listed.json()["items"]] == ["SUMMER-25"]

    patched = await client.patch(f"/v1/promo-codes/{promo['id']}", headers=tenant.headers,
                                 json={"is_active": False, "discount_value": 700})
    assert patched.status_code == 200, patched.text
    assert patched.json()["is_active"] is False and patched.json()["discount_value"] == 700
    wrong = await client.patch(f"/v1/promo-codes/{promo['id']}", headers=tenant.headers,
                               json={"discount_type": "percent"})  # 700% is not a discount
    assert wrong.status_code == 422, wrong.text

    deleted = await client.delete(f"/v1/promo-codes/{promo['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"/v1/promo-codes/{promo['id']}", headers=tenant.headers)).status_code == 404

    with owner_engine.connect() as conn:
        actions = conn.execute(text(
            "SELECT action FROM audit_log WHERE organization_id = :o AND target_id = :t ORDER BY chain_seq"),
            {"o": tenant.organization_id, "t": promo["id"]}).scalars().all()
    assert actions == ["promo_code.created", "promo_code.updated", "promo_code.deleted"]


async def test_checkout_applies_code_and_shows_it_in_the_totals(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, price_amount=2500)
    session = await future_session(client, tenant, activity)
    promo = await new_code(client, tenant, discount_value=20, activity_ids=[activity["id"]])

    reservation = await held(client, tenant, session["id"], "pat@example.com", spots=2)
    done = await checkout_with(client, tenant, reservation, "pat@example.com", promo["code"].lower())
    assert done.status_code == 201, done.text
    assert done.json()["booking"]["total_amount"] == 4000  # 2 x 25.00 less 20%

    booking = (await client.get(f"/v1/bookings/{done.json()['booking']['id']}", headers=tenant.headers)).json()
    assert booking["subtotal_amount"] == 5000 and booking["promo_discount"] == 1000
    assert booking["promo_code"] == promo["code"] and booking["total_amount"] == 4000
    assert times_redeemed(owner_engine, promo["id"]) == 1

    amount = await new_code(client, tenant, discount_type="amount", discount_value=99_999, currency="USD")
    reservation = await held(client, tenant, session["id"], "max@example.com", spots=1)
    done = await checkout_with(client, tenant, reservation, "max@example.com", amount["code"])
    assert done.status_code == 201 and done.json()["booking"]["total_amount"] == 0  # never below zero


async def test_last_redemption_goes_to_exactly_one_of_two_concurrent_checkouts(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, price_amount=2000)
    session = await future_session(client, tenant, activity)
    promo = await new_code(client, tenant, discount_value=50, max_redemptions=2)
    first = await held(client, tenant, session["id"], "early@example.com", spots=1)
    assert (await checkout_with(client, tenant, first, "early@example.com", promo["code"])).status_code == 201

    a = await held(client, tenant, session["id"], "ann@example.com", spots=1)
    b = await held(client, tenant, session["id"], "bob@example.com", spots=1)
    bookings_before = count_bookings(owner_engine, tenant.organization_id)
    results = await asyncio.gather(checkout_with(client, tenant, a, "ann@example.com", promo["code"]),
                                   checkout_with(client, tenant, b, "bob@example.com", promo["code"]))

    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 422], [r.text for r in results]
    winner = next(r for r in results if r.status_code == 201)
    loser = next(r for r in results if r.status_code == 422)
    assert winner.json()["booking"]["total_amount"] == 1000
    assert loser.json()["code"] == "promo_code_invalid", loser.text
    assert times_redeemed(owner_engine, promo["id"]) == 2
    assert count_bookings(owner_engine, tenant.organization_id) == bookings_before + 1  # nothing for the loser
    with owner_engine.connect() as conn:
        statuses = conn.execute(text("SELECT status FROM slot_reservations WHERE id IN (:a, :b) ORDER BY status"),
                                {"a": a, "b": b}).scalars().all()
    assert statuses == ["converted", "held"]  # the loser's hold is still there, to pay without the code

    loser_id = a if winner is results[1] else b
    email = "ann@example.com" if loser_id == a else "bob@example.com"
    full_price = await checkout_with(client, tenant, loser_id, email, None)
    assert full_price.status_code == 201 and full_price.json()["booking"]["total_amount"] == 2000


async def test_expired_future_inactive_and_other_activity_codes_are_refused(client, tenant, owner_engine):
    activity = await make_activity(client, tenant)
    other = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    now = datetime.now(UTC)
    codes = {
        "expired": await new_code(client, tenant, valid_from=(now - timedelta(days=10)).isoformat(),
                                  valid_until=(now - timedelta(days=1)).isoformat()),
        "not yet valid": await new_code(client, tenant, valid_from=(now + timedelta(days=1)).isoformat()),
        "other activity": await new_code(client, tenant, activity_ids=[other["id"]]),
        "inactive": await new_code(client, tenant, is_active=False),
        "other currency": await new_code(client, tenant, discount_type="amount", discount_value=100, currency="EUR"),
    }
    before = count_bookings(owner_engine, tenant.organization_id)
    for why, promo in codes.items():
        reservation = await held(client, tenant, session["id"], "try@example.com", spots=1)
        response = await checkout_with(client, tenant, reservation, "try@example.com", promo["code"])
        assert response.status_code == 422, (why, response.text)
        assert response.json()["code"] == "promo_code_invalid", (why, response.text)
        assert times_redeemed(owner_engine, promo["id"]) == 0, why
        await client.delete(f"/v1/public/venues/{tenant.embed_key}/reservations/{reservation}")
    unknown = await held(client, tenant, session["id"], "try@example.com", spots=1)
    response = await checkout_with(client, tenant, unknown, "try@example.com", "NO-SUCH-CODE")
    assert response.status_code == 422 and response.json()["code"] == "promo_code_invalid"
    assert count_bookings(owner_engine, tenant.organization_id) == before


async def test_staff_below_admin_cannot_manage_codes_and_other_tenants_cannot_see_them(client, tenant, platform_admin):
    from tests.factories import add_staff, bearer, make_tenant

    promo = await new_code(client, tenant)
    manager = await add_staff(client, tenant, "manager")
    refused = await client.get("/v1/promo-codes", headers=bearer(manager))
    assert refused.status_code == 403 and refused.json()["permission"] == "promo_codes.manage"
    other = await make_tenant(client, platform_admin)
    assert (await client.get("/v1/promo-codes", headers=other.headers)).json()["items"] == []
    assert (await client.patch(f"/v1/promo-codes/{promo['id']}", headers=other.headers,
                               json={"is_active": False})).status_code == 404
