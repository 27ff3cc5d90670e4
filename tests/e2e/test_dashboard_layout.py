"""The staff dashboard's main pages in Chromium, at a desk and on a phone: each shows what it is for,
and at 375 px none of them makes the whole page scroll sideways (wide tables scroll inside their
own box). Writes the screenshots of the pages the other browser tests do not visit."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import screenshot
from tests.factories import PASSWORD, book, future_session, make_activity, make_tenant

pytestmark = pytest.mark.xdist_group("browser")

PAGES = [  # path, the page's heading, a screenshot name
    ("/admin/calendar?view=week&date={booked_day}", "Calendar", "admin-calendar"),
    ("/admin/activities", "Activities", None),
    ("/admin/stats?from={today}&to={in_two_weeks}", "Statistics", "admin-stats"),
    ("/admin/customers", "Customers", None),
    ("/admin/settings", "Settings", "admin-settings"),
    ("/admin/staff", "Staff", None),
    ("/admin/promo-codes", "Promo codes", None),
]


async def test_dashboard_pages_fit_a_desk_and_a_phone(new_page, live_server, client, platform_admin):
    tenant = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant, capacity=8)
    session = await future_session(client, tenant, activity)
    await book(client, tenant, session["id"], spots=3, email="fits@example.com")

    for width, suffix in ((1280, ""), (375, "-mobile")):
        page = await new_page(width=width, height=900)
        await page.goto(f"{live_server.url}/auth/login")
        await page.get_by_label("Email").fill(tenant.owner_email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(f"{live_server.url}/admin")
        today = date.today()
        for path, heading, shot in PAGES:
            path = path.format(today=today, in_two_weeks=today + timedelta(days=14), booked_day=session["start_time"][:10])
            await page.goto(f"{live_server.url}{path}")
            await expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"
            if shot and (suffix == "" or shot == "admin-calendar"):
                await screenshot(page, shot + suffix)
        activity_page = f"{live_server.url}/admin/activities/{activity['id']}"
        await page.goto(activity_page)
        await expect(page.get_by_role("heading", level=1)).to_contain_text(activity["name"])
        assert await page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        if suffix == "":
            await screenshot(page, "admin-activity")
