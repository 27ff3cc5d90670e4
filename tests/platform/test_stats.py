"""GET /v1/platform/stats: totals across every organization, live."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from bookingtms.db.engine import DbContext, tenant_transaction
from tests.factories import add_staff, book, future_session, make_activity
from tests.platform.helpers import create_org, patch_org


async def _stats(client, admin) -> dict:
    response = await client.get("/v1/platform/stats", headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _usd(stats: dict) -> dict:
    return next((r for r in stats["revenue"] if r["currency"] == "USD"), {"this_month": 0, "all_time": 0})


async def test_stats_count_organizations_venues_bookings_revenue_and_users(client, platform_admin):
    before = await _stats(client, platform_admin)
    assert set(before) >= {"organizations", "venues", "bookings", "revenue", "users"}

    org = await create_org(client, platform_admin)
    other = await create_org(client, platform_admin)
    assert (await patch_org(client, platform_admin, other.organization_id, status="suspended")).status_code == 200
    activity = await make_activity(client, org, price_amount=1250)
    session = await future_session(client, org, activity)
    await book(client, org, session["id"], spots=2)
    await add_staff(client, org, "staff")

    after = await _stats(client, platform_admin)
    orgs_before, orgs_after = before["organizations"], after["organizations"]
    assert orgs_after["total"] == orgs_before["total"] + 2
    assert orgs_after["by_status"]["active"] == orgs_before["by_status"]["active"] + 1
    assert orgs_after["by_status"]["suspended"] == orgs_before["by_status"]["suspended"] + 1
    assert orgs_after["by_subscription_status"]["trial"] == orgs_before["by_subscription_status"]["trial"] + 2
    assert after["venues"]["total"] == before["venues"]["total"] + 2
    assert after["bookings"]["this_month"] == before["bookings"]["this_month"] + 1
    assert after["bookings"]["all_time"] == before["bookings"]["all_time"] + 1
    assert _usd(after)["this_month"] == _usd(before)["this_month"] + 2500
    assert _usd(after)["all_time"] == _usd(before)["all_time"] + 2500
    # two owners (who signed in) and one staff member
    assert after["users"]["active"] == before["users"]["active"] + 3
    assert after["users"]["signed_in_last_30_days"] == before["users"]["signed_in_last_30_days"] + 3


async def test_stats_are_for_the_platform_only(client, tenant):
    assert (await client.get("/v1/platform/stats", headers=tenant.headers)).status_code == 403
    # and the database function behind it answers nothing to an organization's context
    async with tenant_transaction(DbContext(organization_id=uuid.UUID(tenant.organization_id))) as db:
        assert (await db.execute(text("SELECT platform_stats()"))).scalar_one() is None
