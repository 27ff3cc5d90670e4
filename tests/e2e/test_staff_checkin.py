"""Checking a customer in, in Chromium: a front-desk (staff role) user signs in through the login
page, opens Today, clicks "Check in" on a booking; the row says checked in and the database agrees.
While the page stays open, a booking made through the API appears in the list without a reload."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect
from sqlalchemy import text

from tests.auth.conftest import make_staff
from tests.e2e.conftest import screenshot
from tests.factories import PASSWORD, book, make_activity, make_tenant

pytestmark = pytest.mark.xdist_group("browser")

ZONES = ("America/Los_Angeles", "America/New_York", "Europe/London", "Asia/Kolkata", "Asia/Tokyo", "Pacific/Auckland")


def zone_before_nine_pm() -> str:
    """A venue zone where it is not yet 21:00, so a 23:00 session is still ahead today."""
    return next(tz for tz in ZONES if datetime.now(ZoneInfo(tz)).hour < 21)


async def test_staff_checks_a_customer_in_from_today_and_new_bookings_appear_live(
        new_page, live_server, client, platform_admin, owner_engine):
    tz = zone_before_nine_pm()
    tenant = await make_tenant(client, platform_admin, timezone_name=tz)
    activity = await make_activity(client, tenant, capacity=12, schedule={
        "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "times": ["23:00"]}]})
    sessions = (await client.get("/v1/sessions", headers=tenant.headers,
                                 params={"activity_id": activity["id"], "limit": 1})).json()["items"]
    session = sessions[0]
    assert datetime.fromisoformat(session["start_time"]).astimezone(ZoneInfo(tz)).date() == datetime.now(ZoneInfo(tz)).date()
    first = await book(client, tenant, session["id"], spots=3, email="arrives.first@example.com")
    staff = await make_staff(tenant, "staff")

    page = await new_page()
    await page.goto(f"{live_server.url}/admin")
    await expect(page).to_have_url(re.compile(r"/auth/login\?next=/admin$"))
    await page.get_by_label("Email").fill(staff.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{live_server.url}/admin")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Today")
    await expect(page.get_by_role("heading", level=2, name=re.compile(r"^23:00–00:00 · " + re.escape(activity["name"])))).to_be_visible()
    row = page.locator(f"tr#b-{first['id']}")
    await expect(row).to_contain_text("3")
    await expect(page.get_by_text("3 / 12 booked")).to_be_visible()

    await row.get_by_role("button", name=re.compile(r"^Check in")).click()
    await expect(page.get_by_role("status").filter(has_text="checked in at")).to_be_visible()
    await expect(row).to_contain_text("Checked in")
    await expect(row.get_by_role("button", name=re.compile(r"^Check in"))).to_have_count(0)
    with owner_engine.connect() as conn:
        checked_in_at = conn.execute(text("SELECT checked_in_at FROM bookings WHERE id = :id"),
                                     {"id": first["id"]}).scalar_one()
    assert checked_in_at is not None
    await expect(row).to_contain_text(f"Checked in {checked_in_at.astimezone(ZoneInfo(tz)):%H:%M}")

    # Live: a booking made elsewhere (the widget's API) shows up without a reload.
    await page.evaluate("window.__same_page = true")
    second = await book(client, tenant, session["id"], spots=2, email="arrives.later@example.com")
    new_row = page.locator(f"tr#b-{second['id']}")
    await expect(new_row).to_be_visible(timeout=10_000)
    await expect(new_row.get_by_role("button", name=re.compile(r"^Check in"))).to_be_visible()
    await expect(page.get_by_text("5 / 12 booked")).to_be_visible()
    await expect(page.locator("#live-status")).to_contain_text("Updated at")
    assert await page.evaluate("window.__same_page === true")  # no reload happened
    await screenshot(page, "admin-today")
