"""Checkout with Stripe Connect, the webhooks that settle it, and refunds."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import text

from tests.factories import add_staff, checkout, future_session, hold, make_activity, run_doctor
from tests.payments.conftest import completed, event, expired, form, make_stripe_org, post_event


def db_one(owner_engine, sql: str, **params):
    with owner_engine.connect() as conn:
        return conn.execute(text(sql), params).one()


def remaining(owner_engine, session_id: str) -> int:
    return db_one(owner_engine, "SELECT capacity_remaining FROM activity_sessions WHERE id = :id",
                  id=session_id).capacity_remaining


async def stripe_checkout(client, tenant, session_id: str, spots: int = 1, email: str = "payer@example.com"):
    held = await hold(client, tenant, session_id, spots, email)
    assert held.status_code == 201, held.text
    done = await checkout(client, tenant, held.json()["reservation_id"], email)
    assert done.status_code == 201, done.text
    return done.json()


async def booking(client, tenant, booking_id: str) -> dict:
    response = await client.get(f"/v1/bookings/{booking_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_checkout_opens_a_session_on_the_connected_account_and_payment_confirms(
        client, tenant, owner_engine, stripe_api):
    account = make_stripe_org(owner_engine, tenant.organization_id, fee_percent="2.5")
    activity = await make_activity(client, tenant, capacity=4, price_amount=1030)
    session = await future_session(client, tenant, activity)
    before = time.time()
    result = await stripe_checkout(client, tenant, session["id"])
    booking_id = result["booking"]["id"]
    assert result["booking"]["status"] == "pending_payment"
    assert result["payment"]["provider"] == "stripe" and result["payment"]["status"] == "pending"
    assert result["payment"]["checkout_url"].startswith("https://checkout.stripe.com/")
    assert remaining(owner_engine, session["id"]) == 3  # the pending booking keeps its spot

    [request] = stripe_api.calls_to("/v1/checkout/sessions")
    sent = form(request)
    assert request.headers["Stripe-Account"] == account
    assert request.headers["Idempotency-Key"] == f"bookingtms-checkout-{booking_id}"
    assert request.headers["Authorization"] == "Bearer sk_test_bookingtms_0123456789"
    assert sent["line_items[0][price_data][unit_amount]"] == "1030"
    assert sent["line_items[0][price_data][currency]"] == "usd"
    assert sent["payment_intent_data[application_fee_amount]"] == "26"  # 2.5 % of 1030 = 25.75, half up
    assert sent["metadata[booking_id]"] == booking_id
    assert sent["metadata[organization_id]"] == tenant.organization_id
    assert abs(int(sent["expires_at"]) - (before + 30 * 60)) < 60
    shown = await booking(client, tenant, booking_id)
    assert shown["status"] == "pending_payment" and shown["payment_status"] == "pending"

    cs = stripe_api.sessions[0]["id"]
    paid = event("checkout.session.completed", completed(cs, booking_id, tenant.organization_id, 1030, "pi_1"),
                 account)
    response = await post_event(client, paid)
    assert response.status_code == 200, response.text
    shown = await booking(client, tenant, booking_id)
    assert shown["status"] == "confirmed" and shown["payment_status"] == "paid"
    pay = db_one(owner_engine, "SELECT amount, application_fee_amount, net_to_merchant, status, "
                 "stripe_payment_intent_id FROM payments WHERE booking_id = :b AND kind = 'charge'", b=booking_id)
    assert (pay.amount, pay.application_fee_amount, pay.net_to_merchant, pay.status) == (1030, 26, 1004, "succeeded")
    assert pay.stripe_payment_intent_id == "pi_1"
    totals = "SELECT total_volume_processed AS v, total_application_fees AS f FROM organizations WHERE id = :o"
    assert tuple(db_one(owner_engine, totals, o=tenant.organization_id)) == (1030, 26)

    # A replay, and the session's late "expired" event, change nothing.
    assert (await post_event(client, paid)).status_code == 200
    late = event("checkout.session.expired", expired(cs, booking_id, tenant.organization_id), account)
    assert (await post_event(client, late)).status_code == 200
    assert tuple(db_one(owner_engine, totals, o=tenant.organization_id)) == (1030, 26)
    shown = await booking(client, tenant, booking_id)
    assert shown["status"] == "confirmed" and shown["payment_status"] == "paid"
    assert remaining(owner_engine, session["id"]) == 3
    handled = db_one(owner_engine, "SELECT count(*) AS n, count(handled_at) AS h FROM stripe_events "
                     "WHERE organization_id = :o", o=tenant.organization_id)
    assert (handled.n, handled.h) == (2, 2)


async def test_bad_or_missing_signature_is_refused_and_changes_nothing(client, tenant, owner_engine, stripe_api):
    account = make_stripe_org(owner_engine, tenant.organization_id)
    activity = await make_activity(client, tenant, capacity=4, price_amount=1000)
    session = await future_session(client, tenant, activity)
    booking_id = (await stripe_checkout(client, tenant, session["id"]))["booking"]["id"]
    cs = stripe_api.sessions[0]["id"]
    event_id = f"evt_{uuid.uuid4().hex}"
    paid = event("checkout.session.completed", completed(cs, booking_id, tenant.organization_id, 1000, "pi_2"),
                 account, event_id)
    from tests.payments.conftest import sign

    for signature in (None, "t=1,v1=deadbeef", sign(paid, secret="whsec_someone_else"),
                      sign(paid, at=int(time.time()) - 3600), sign(paid.replace("1000", "1"))):
        response = await post_event(client, paid, signature)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_signature"
    tampered = paid.replace('"amount_total": 1000', '"amount_total": 1')
    response = await post_event(client, tampered, sign(paid))
    assert response.status_code == 400 and response.json()["code"] == "invalid_signature"
    stored = db_one(owner_engine, "SELECT count(*) AS n FROM stripe_events WHERE id = :e", e=event_id)
    assert stored.n == 0
    assert (await booking(client, tenant, booking_id))["status"] == "pending_payment"


async def test_organization_without_charges_cannot_check_out(client, tenant, owner_engine, stripe_api):
    make_stripe_org(owner_engine, tenant.organization_id, charges_enabled=False)
    activity = await make_activity(client, tenant, capacity=4)
    session = await future_session(client, tenant, activity)
    held = await hold(client, tenant, session["id"], 2)
    response = await checkout(client, tenant, held.json()["reservation_id"])
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "payments_unavailable"
    assert stripe_api.calls_to("/v1/checkout/sessions") == []
    row = db_one(owner_engine, "SELECT r.status, (SELECT count(*) FROM bookings b WHERE b.session_id = r.session_id) "
                 "AS bookings FROM slot_reservations r WHERE r.id = :r", r=held.json()["reservation_id"])
    assert (row.status, row.bookings) == ("held", 0)
    assert remaining(owner_engine, session["id"]) == 2


async def test_expired_checkout_releases_and_a_late_payment_takes_the_spots_again(
        client, tenant, owner_engine, stripe_api):
    account = make_stripe_org(owner_engine, tenant.organization_id)
    activity = await make_activity(client, tenant, capacity=4, price_amount=1500)
    session = await future_session(client, tenant, activity)
    booking_id = (await stripe_checkout(client, tenant, session["id"], 2))["booking"]["id"]
    cs = stripe_api.sessions[0]["id"]
    assert remaining(owner_engine, session["id"]) == 2
    response = await post_event(client, event("checkout.session.expired",
                                              expired(cs, booking_id, tenant.organization_id), account))
    assert response.status_code == 200, response.text
    released = await booking(client, tenant, booking_id)
    assert released["status"] == "cancelled" and released["cancel_reason"] == "payment_expired"
    assert released["cancelled_by"] == "system"
    assert remaining(owner_engine, session["id"]) == 4
    customer = db_one(owner_engine, "SELECT total_bookings, total_spent FROM customers WHERE id = :c",
                      c=released["customer_id"])
    assert tuple(customer) == (0, 0)

    # The customer's payment lands after all; the spots are still free, so the booking is back.
    response = await post_event(client, event("checkout.session.completed", completed(
        cs, booking_id, tenant.organization_id, 3000, "pi_late"), account))
    assert response.status_code == 200, response.text
    back = await booking(client, tenant, booking_id)
    assert back["status"] == "confirmed" and back["payment_status"] == "paid" and back["cancel_reason"] is None
    assert remaining(owner_engine, session["id"]) == 2
    assert tuple(db_one(owner_engine, "SELECT total_bookings, total_spent FROM customers WHERE id = :c",
                        c=released["customer_id"])) == (1, 3000)
    assert stripe_api.calls_to("/v1/refunds") == []


async def test_payment_after_expiry_on_a_sold_out_session_is_refunded_never_oversold(
        client, tenant, owner_engine, stripe_api):
    account = make_stripe_org(owner_engine, tenant.organization_id, fee_percent="10")
    activity = await make_activity(client, tenant, capacity=2, min_players=1, price_amount=2000)
    session = await future_session(client, tenant, activity)
    first = (await stripe_checkout(client, tenant, session["id"], 2, "late@example.com"))["booking"]["id"]
    cs = stripe_api.sessions[0]["id"]
    await post_event(client, event("checkout.session.expired", expired(cs, first, tenant.organization_id), account))
    # Someone else takes both spots and pays.
    second = (await stripe_checkout(client, tenant, session["id"], 2, "quick@example.com"))["booking"]["id"]
    assert remaining(owner_engine, session["id"]) == 0
    await post_event(client, event("checkout.session.completed", completed(
        stripe_api.sessions[1]["id"], second, tenant.organization_id, 4000, "pi_quick"), account))

    response = await post_event(client, event("checkout.session.completed", completed(
        cs, first, tenant.organization_id, 4000, "pi_late"), account))
    assert response.status_code == 200, response.text
    late = await booking(client, tenant, first)
    assert late["status"] == "cancelled" and late["attention"] == "paid_after_expiry_refunded"
    assert late["payment_status"] == "refunded" and late["refund_amount"] == 4000
    assert (await booking(client, tenant, second))["status"] == "confirmed"
    assert remaining(owner_engine, session["id"]) == 0

    [request] = stripe_api.calls_to("/v1/refunds")
    sent = form(request)
    assert request.headers["Stripe-Account"] == account
    assert sent == {"amount": "4000", "refund_application_fee": "true", "payment_intent": "pi_late",
                    "metadata[booking_id]": first, "metadata[payment_id]": sent["metadata[payment_id]"]}
    assert request.headers["Idempotency-Key"] == f"bookingtms-refund-{sent['metadata[payment_id]']}-auto"
    refund = db_one(owner_engine, "SELECT amount, application_fee_refunded, status FROM payments "
                    "WHERE booking_id = :b AND kind = 'refund'", b=first)
    assert tuple(refund) == (4000, 400, "succeeded")
    code, out = await run_doctor()
    assert code == 0, out


async def test_concurrent_duplicate_deliveries_apply_once(client, tenant, owner_engine, stripe_api):
    account = make_stripe_org(owner_engine, tenant.organization_id, fee_percent="5")
    activity = await make_activity(client, tenant, capacity=4, price_amount=1000)
    session = await future_session(client, tenant, activity)
    booking_id = (await stripe_checkout(client, tenant, session["id"]))["booking"]["id"]
    paid = event("checkout.session.completed", completed(
        stripe_api.sessions[0]["id"], booking_id, tenant.organization_id, 1000, "pi_dup"), account)
    responses = await asyncio.gather(*(post_event(client, paid) for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    totals = db_one(owner_engine, "SELECT total_volume_processed AS v, total_application_fees AS f "
                    "FROM organizations WHERE id = :o", o=tenant.organization_id)
    assert tuple(totals) == (1000, 50)
    assert db_one(owner_engine, "SELECT count(*) AS n FROM notification_outbox WHERE booking_id = :b "
                  "AND kind = 'booking_confirmation'", b=booking_id).n == 1


async def test_partial_refund_by_policy_refunds_the_fee_in_proportion(client, tenant, owner_engine, stripe_api):
    account = make_stripe_org(owner_engine, tenant.organization_id, fee_percent="2.5")
    # The session is ~3 days (72 h) away: past the 100 h full-refund window, inside the 48 h partial one.
    activity = await make_activity(client, tenant, capacity=4, price_amount=1030, cancellation_policy={
        "full_refund_hours": 100, "partial_refund_hours": 48, "partial_refund_percent": 50})
    session = await future_session(client, tenant, activity)
    booking_id = (await stripe_checkout(client, tenant, session["id"]))["booking"]["id"]
    await post_event(client, event("checkout.session.completed", completed(
        stripe_api.sessions[0]["id"], booking_id, tenant.organization_id, 1030, "pi_part"), account))

    response = await client.post(f"/v1/bookings/{booking_id}/cancel", headers=tenant.headers, json={})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled" and body["refund_amount"] == 515
    assert body["payment_status"] == "partially_refunded"
    assert body["cancellation_policy"]["applied"]["refund_percent"] == 50
    [request] = stripe_api.calls_to("/v1/refunds")
    sent = form(request)
    assert request.headers["Stripe-Account"] == account
    assert request.headers["Idempotency-Key"] == f"bookingtms-refund-{booking_id}-cancel"
    assert (sent["amount"], sent["refund_application_fee"], sent["payment_intent"]) == ("515", "true", "pi_part")
    charge_sql = ("SELECT refunded_amount, application_fee_refunded FROM payments WHERE booking_id = :b "
                  "AND kind = 'charge'")
    assert tuple(db_one(owner_engine, charge_sql, b=booking_id)) == (515, 13)  # 26 * 515 / 1030

    # Stripe's charge.refunded lists our refund (recorded already) and one made in the dashboard.
    refund_id = db_one(owner_engine, "SELECT stripe_refund_id FROM payments WHERE booking_id = :b AND kind = 'refund'",
                       b=booking_id).stripe_refund_id
    charge = {"id": "ch_part", "object": "charge", "payment_intent": "pi_part", "amount": 1030,
              "amount_refunded": 615, "refunded": False, "refunds": {"object": "list", "data": [
                  {"id": refund_id, "amount": 515, "status": "succeeded", "created": 1,
                   "metadata": {"payment_id": "ours"}},
                  {"id": "re_dashboard", "amount": 100, "status": "succeeded", "created": 2, "metadata": {}}]}}
    refunded = event("charge.refunded", charge, account)
    for _ in range(2):
        assert (await post_event(client, refunded)).status_code == 200
    assert (await post_event(client, event("charge.refunded", charge, account))).status_code == 200  # new id
    assert tuple(db_one(owner_engine, charge_sql, b=booking_id)) == (615, 13)
    rows = db_one(owner_engine, "SELECT count(*) AS n, sum(amount) AS total FROM payments WHERE booking_id = :b "
                  "AND kind = 'refund'", b=booking_id)
    assert (rows.n, rows.total) == (2, 615)
    after = await booking(client, tenant, booking_id)
    assert after["refund_amount"] == 615 and after["payment_status"] == "partially_refunded"
    code, out = await run_doctor()
    assert code == 0, out


async def test_refund_event_before_completion_leaves_a_consistent_booking(client, tenant, owner_engine, stripe_api):
    account = make_stripe_org(owner_engine, tenant.organization_id, fee_percent="2.5")
    activity = await make_activity(client, tenant, capacity=4, price_amount=800)
    session = await future_session(client, tenant, activity)
    booking_id = (await stripe_checkout(client, tenant, session["id"]))["booking"]["id"]
    charge = {"id": "ch_early", "object": "charge", "payment_intent": "pi_early", "amount": 800,
              "amount_refunded": 800, "refunded": True,
              "metadata": {"booking_id": booking_id, "organization_id": tenant.organization_id},
              "refunds": {"object": "list", "data": [{"id": f"re_{uuid.uuid4().hex[:10]}", "amount": 800,
                                                      "status": "succeeded", "created": 1, "metadata": {}}]}}
    assert (await post_event(client, event("charge.refunded", charge, account))).status_code == 200
    assert (await booking(client, tenant, booking_id))["status"] == "pending_payment"
    assert (await post_event(client, event("checkout.session.completed", completed(
        stripe_api.sessions[0]["id"], booking_id, tenant.organization_id, 800, "pi_early"), account))).status_code == 200
    after = await booking(client, tenant, booking_id)
    assert after["status"] == "confirmed"
    assert after["payment_status"] == "refunded" and after["refund_amount"] == 800
    # Cancelling it now refunds nothing more.
    response = await client.post(f"/v1/bookings/{booking_id}/cancel", headers=tenant.headers, json={"refund": "full"})
    assert response.status_code == 200, response.text
    assert response.json()["refund_amount"] == 800
    assert stripe_api.calls_to("/v1/refunds") == []


async def test_lapsed_pending_payment_is_released_by_the_job(client, tenant, owner_engine, stripe_api):
    from bookingtms.payments.jobs import release_lapsed_payments

    make_stripe_org(owner_engine, tenant.organization_id)
    activity = await make_activity(client, tenant, capacity=3)
    session = await future_session(client, tenant, activity)
    booking_id = (await stripe_checkout(client, tenant, session["id"], 3))["booking"]["id"]
    assert await release_lapsed_payments() >= 0
    assert (await booking(client, tenant, booking_id))["status"] == "pending_payment"
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE bookings SET payment_expires_at = now() - interval '1 second' WHERE id = :b"),
                     {"b": booking_id})
    assert await release_lapsed_payments() >= 1
    after = await booking(client, tenant, booking_id)
    assert after["status"] == "cancelled" and after["cancel_reason"] == "payment_expired"
    assert remaining(owner_engine, session["id"]) == 3


async def test_onboarding_creates_one_account_and_account_updated_turns_stripe_on(client, tenant, owner_engine,
                                                                                  stripe_api):
    response = await client.post("/v1/payments/stripe/onboarding", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith("https://connect.stripe.com/")
    [created] = stripe_api.calls_to("/v1/accounts")
    assert created.headers["Idempotency-Key"] == f"bookingtms-account-{tenant.organization_id}"
    assert form(created)["type"] == "express"
    org_sql = ("SELECT stripe_account_id, stripe_charges_enabled, stripe_payouts_enabled, payment_provider "
               "FROM organizations WHERE id = :o")
    org = db_one(owner_engine, org_sql, o=tenant.organization_id)
    assert org.stripe_account_id.startswith("acct_") and org.payment_provider == "offline"
    again = await client.post("/v1/payments/stripe/onboarding", headers=tenant.headers)
    assert again.status_code == 200
    assert len(stripe_api.calls_to("/v1/accounts")) == 1
    links = stripe_api.calls_to("/v1/account_links")
    assert len(links) == 2 and all(form(r)["account"] == org.stripe_account_id for r in links)
    assert links[0].headers["Idempotency-Key"] != links[1].headers["Idempotency-Key"]

    staff = await add_staff(client, tenant, "staff")
    refused = await client.post("/v1/payments/stripe/onboarding", headers={"Authorization": f"Bearer {staff}"})
    assert refused.status_code == 403

    account = {"id": org.stripe_account_id, "object": "account", "charges_enabled": True, "payouts_enabled": False}
    assert (await post_event(client, event("account.updated", account, org.stripe_account_id))).status_code == 200
    org = db_one(owner_engine, org_sql, o=tenant.organization_id)
    assert (org.stripe_charges_enabled, org.stripe_payouts_enabled, org.payment_provider) == (True, False, "stripe")
    account.update(charges_enabled=False, payouts_enabled=True)
    assert (await post_event(client, event("account.updated", account, org.stripe_account_id))).status_code == 200
    org = db_one(owner_engine, org_sql, o=tenant.organization_id)
    assert (org.stripe_charges_enabled, org.stripe_payouts_enabled) == (False, True)


async def test_offline_checkout_is_unchanged(client, tenant, owner_engine, stripe_api):
    activity = await make_activity(client, tenant, capacity=4, price_amount=1200)
    session = await future_session(client, tenant, activity)
    result = await stripe_checkout(client, tenant, session["id"], 2)
    assert result["booking"]["status"] == "confirmed"
    assert result["payment"] == {"provider": "offline", "status": "pending", "checkout_url": None}
    assert list(stripe_api.router.calls) == []
    response = await client.post(f"/v1/bookings/{result['booking']['id']}/cancel", headers=tenant.headers, json={})
    assert response.status_code == 200 and response.json()["refund_amount"] == 0
    assert list(stripe_api.router.calls) == []
