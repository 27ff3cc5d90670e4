"""platform.limits.check_limit: the plan's max_staff, max_venues and max_bookings (per calendar
month, UTC) as one reusable check, called in the transaction of the write it guards."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.errors import Forbidden
from bookingtms.models import users
from bookingtms.platform.limits import check_limit, usage
from tests.factories import book, future_session, make_activity, make_tenant, unique


def ctx(tenant) -> DbContext:
    return DbContext(organization_id=uuid.UUID(tenant.organization_id))


async def check(tenant, kind: str, adding: int = 1):
    async with tenant_transaction(ctx(tenant)) as db:
        return await check_limit(db, uuid.UUID(tenant.organization_id), kind, adding)


async def add_user(tenant, active: bool = True) -> None:
    org = uuid.UUID(tenant.organization_id)
    async with tenant_transaction(ctx(tenant)) as db:
        await db.execute(users.insert().values(organization_id=org, email=f"{unique('seat')}@example.com",
                                               full_name="Seat", role="staff", is_active=active))


@pytest.fixture
def custom_plan(owner_engine):
    """A plan with small limits, made as the platform would (owner connection), removed afterwards
    with the organizations moved back to their plan."""
    slug = unique("tiny")
    with owner_engine.begin() as conn:
        plan_id = conn.execute(text("INSERT INTO plans (name, slug, max_venues, max_staff, max_bookings) "
                                    "VALUES ('Tiny', :s, 2, 2, 2) RETURNING id"), {"s": slug}).scalar_one()
    moved: list[str] = []

    def assign(tenant) -> None:
        with owner_engine.begin() as conn:
            conn.execute(text("UPDATE organizations SET plan_id = :p WHERE id = :o"),
                         {"p": plan_id, "o": tenant.organization_id})
        moved.append(tenant.organization_id)

    yield assign
    with owner_engine.begin() as conn:
        for org in moved:
            conn.execute(text("UPDATE organizations SET plan_id = (SELECT id FROM plans WHERE slug = 'enterprise') "
                              "WHERE id = :o"), {"o": org})
        conn.execute(text("DELETE FROM plans WHERE id = :p"), {"p": plan_id})


async def test_staff_counts_active_members_against_max_staff(client, platform_admin):
    tenant = await make_tenant(client, platform_admin, plan="free")  # max_staff 3; the owner is active
    current = await check(tenant, "staff")
    assert (current.limit, current.used, current.plan) == (3, 1, "free")
    await add_user(tenant)
    await add_user(tenant, active=False)  # inactive members hold no seat
    assert (await check(tenant, "staff")).used == 2
    with pytest.raises(Forbidden) as refused:
        await check(tenant, "staff", adding=2)
    await add_user(tenant)
    with pytest.raises(Forbidden) as refused:
        await check(tenant, "staff")
    problem = refused.value.to_problem()
    assert problem["status"] == 403 and problem["code"] == "plan_limit_reached"
    assert problem["limit"] == "max_staff" and problem["maximum"] == 3 and problem["current"] == 3
    assert "max_staff" in problem["detail"] and "free" in problem["detail"]


async def test_venues_count_all_but_archived(client, platform_admin, owner_engine):
    tenant = await make_tenant(client, platform_admin, plan="free")  # max_venues 1; the default venue is it
    with pytest.raises(Forbidden) as refused:
        await check(tenant, "venues")
    assert refused.value.to_problem()["limit"] == "max_venues"
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE venues SET status = 'archived' WHERE organization_id = :o"),
                     {"o": tenant.organization_id})
    current = await check(tenant, "venues")
    assert (current.limit, current.used) == (1, 0)


async def test_bookings_count_this_utc_month_and_not_cancelled(client, platform_admin, owner_engine, custom_plan):
    tenant = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant, capacity=20)
    session = await future_session(client, tenant, activity)
    first = await book(client, tenant, session["id"], email=f"{unique('a')}@example.com")
    await book(client, tenant, session["id"], email=f"{unique('b')}@example.com")
    custom_plan(tenant)  # max_bookings 2, reached
    with pytest.raises(Forbidden) as refused:
        await check(tenant, "bookings_per_month")
    assert refused.value.to_problem()["limit"] == "max_bookings"

    response = await client.post(f"/v1/bookings/{first['id']}/cancel", headers=tenant.headers, json={"refund": "none"})
    assert response.status_code == 200, response.text
    assert (await check(tenant, "bookings_per_month")).used == 1  # a cancelled booking frees its place

    last_month = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(seconds=1)
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE bookings SET created_at = :t WHERE organization_id = :o"),
                     {"t": last_month, "o": tenant.organization_id})
    async with tenant_transaction(ctx(tenant)) as db:
        current = await usage(db, uuid.UUID(tenant.organization_id), "bookings_per_month")
    assert (current.limit, current.used) == (2, 0)


async def test_an_unlimited_plan_counts_nothing_and_unknown_kinds_are_programming_errors(client, platform_admin):
    tenant = await make_tenant(client, platform_admin, plan="enterprise")
    for kind in ("staff", "venues", "bookings_per_month"):
        current = await check(tenant, kind, adding=10_000)
        assert current.limit is None and current.used is None and current.plan == "enterprise"
    with pytest.raises(ValueError):
        await check(tenant, "spaceships")


async def test_two_transactions_cannot_both_take_the_last_seat(client, platform_admin, custom_plan):
    tenant = await make_tenant(client, platform_admin)
    custom_plan(tenant)  # max_staff 2: one seat left beside the owner
    org = uuid.UUID(tenant.organization_id)
    first_checked, release_first = asyncio.Event(), asyncio.Event()

    async def first():
        async with tenant_transaction(ctx(tenant)) as db:
            await check_limit(db, org, "staff")
            await db.execute(users.insert().values(organization_id=org, email=f"{unique('one')}@example.com",
                                                   role="staff"))
            first_checked.set()
            await release_first.wait()  # holds the lock, uncommitted

    async def second():
        await first_checked.wait()
        async with tenant_transaction(ctx(tenant)) as db:
            await check_limit(db, org, "staff")  # waits for the first to commit, then counts its seat

    one = asyncio.create_task(first())
    two = asyncio.create_task(second())
    await first_checked.wait()
    await asyncio.sleep(0.3)
    assert not two.done(), "the second check did not wait for the first transaction"
    release_first.set()
    await one
    with pytest.raises(Forbidden):
        await two
