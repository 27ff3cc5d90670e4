"""Cancelling with a refund, in Chromium: a manager opens a paid booking, sees what each refund
choice gives back, cancels with the policy's refund; the page says cancelled with the refund, and
the booking, the payment's refund and the session's capacity in the database agree."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect
from sqlalchemy import text

from tests.auth.conftest import make_staff
from tests.e2e.conftest import screenshot
from tests.factories import PASSWORD, book, future_session, make_activity

pytestmark = pytest.mark.xdist_group("browser")


async def test_a_manager_cancels_a_paid_booking_with_the_policy_refund(new_page, live_server, client, tenant,
                                                                       owner_engine):
    # Three days ahead: outside the 100-hour full refund, inside the 24-hour 50 % window's reach.
    activity = await make_activity(client, tenant, capacity=10, price_amount=2500, cancellation_policy={
        "full_refund_hours": 100, "partial_refund_hours": 24, "partial_refund_percent": 50})
    session = await future_session(client, tenant, activity, days_ahead=3)
    booking = await book(client, tenant, session["id"], spots=2, email="paid.guest@example.com")
    await book(client, tenant, session["id"], spots=1, email="another.guest@example.com")
    with owner_engine.begin() as conn:  # paid at the venue when it was booked by phone
        conn.execute(text("UPDATE payments SET status = 'succeeded' WHERE booking_id = :id AND kind = 'charge'"),
                     {"id": booking["id"]})
        conn.execute(text("UPDATE bookings SET payment_status = 'paid' WHERE id = :id"), {"id": booking["id"]})
    manager = await make_staff(tenant, "manager")

    page = await new_page()
    await page.goto(f"{live_server.url}/auth/login?next=/admin/bookings")
    await page.get_by_label("Email").fill(manager.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{live_server.url}/admin/bookings")
    await expect(page.get_by_role("heading", name="Bookings", level=1)).to_be_visible()
    await expect(page.get_by_role("link", name="Export CSV")).to_be_visible()
    await screenshot(page, "admin-bookings")

    await page.get_by_role("link", name=booking["reference"]).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(booking["reference"])
    await expect(page.locator("#refund-policy-amount")).to_have_text("refunds 25.00 USD")
    await expect(page.locator("#refund-full-amount")).to_have_text("refunds 50.00 USD")
    await expect(page.locator("#refund-none-amount")).to_have_text("refunds 0.00 USD")
    await expect(page.get_by_label(re.compile(r"As the cancellation policy gives \(50 %\)"))).to_be_checked()
    await screenshot(page, "admin-booking")

    await page.get_by_label(re.compile("^Reason")).fill("Customer called: flu")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Cancel booking").click()
    await expect(page.get_by_role("status").filter(has_text="cancelled")).to_contain_text("25.00 USD refunded")
    await expect(page.locator(".state-line")).to_contain_text("cancelled")
    await expect(page.locator("dd.refunded")).to_have_text("25.00 USD")
    await expect(page.get_by_role("button", name="Cancel booking")).to_have_count(0)

    with owner_engine.connect() as conn:
        row = conn.execute(text("SELECT status, refund_amount, payment_status, cancel_reason FROM bookings "
                                "WHERE id = :id"), {"id": booking["id"]}).one()
        refunds = conn.execute(text("SELECT amount, status FROM payments WHERE booking_id = :id AND kind = 'refund'"),
                               {"id": booking["id"]}).all()
        charge = conn.execute(text("SELECT refunded_amount FROM payments WHERE booking_id = :id AND kind = 'charge'"),
                              {"id": booking["id"]}).scalar_one()
        left = conn.execute(text("SELECT capacity_remaining FROM activity_sessions WHERE id = :id"),
                            {"id": session["id"]}).scalar_one()
    assert tuple(row) == ("cancelled", 2500, "partially_refunded", "Customer called: flu")
    assert [tuple(r) for r in refunds] == [(2500, "succeeded")] and charge == 2500
    assert left == 10 - 1  # the other booking's one spot; the cancelled two are back
