"""Plans: CRUD, retiring a plan in use, and the limits a plan sets (venues, bookings per month)."""

from __future__ import annotations

import uuid

from tests.factories import book, checkout, future_session, hold, make_activity, unique
from tests.platform.helpers import create_org, patch_org


async def _new_plan(client, admin, **fields):
    body = {"name": "Tiny", "slug": unique("tiny"), "price_monthly": 900, "currency": "EUR", "max_venues": 2,
            "max_staff": 2, "max_bookings": 2, "features": {"sms": False}} | fields
    response = await client.post("/v1/platform/plans", headers=admin.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_plans_crud_validation_and_audit(client, platform_admin, audit_rows):
    plan = await _new_plan(client, platform_admin)
    assert plan["is_active"] is True and plan["organizations_count"] == 0
    assert (plan["price_monthly"], plan["currency"], plan["max_bookings"]) == (900, "EUR", 2)

    listed = await client.get("/v1/platform/plans", headers=platform_admin.headers)
    slugs = [p["slug"] for p in listed.json()["items"]]
    assert {"free", "pro", "enterprise", plan["slug"]} <= set(slugs)
    fetched = await client.get(f"/v1/platform/plans/{plan['id']}", headers=platform_admin.headers)
    assert fetched.json()["name"] == "Tiny"

    changed = await client.patch(f"/v1/platform/plans/{plan['id']}", headers=platform_admin.headers,
                                 json={"price_monthly": 1900, "max_bookings": None, "features": {"sms": True}})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["price_monthly"], changed.json()["max_bookings"]) == (1900, None)

    rows = audit_rows(None, target_id=plan["id"])
    assert [r["action"] for r in rows] == ["plan.created", "plan.updated"]
    assert all(r["actor_type"] == "platform" for r in rows)
    assert rows[1]["changes"] == {"price_monthly": {"from": 900, "to": 1900}, "max_bookings": {"from": 2, "to": None},
                                  "features": {"from": {"sms": False}, "to": {"sms": True}}}

    taken = await client.post("/v1/platform/plans", headers=platform_admin.headers,
                              json={"name": "Again", "slug": plan["slug"]})
    assert taken.status_code == 409 and taken.json()["code"] == "slug_taken"
    clash = await client.patch(f"/v1/platform/plans/{plan['id']}", headers=platform_admin.headers, json={"slug": "pro"})
    assert clash.status_code == 409
    for bad in ({"name": "x", "slug": unique("p"), "max_venues": 0}, {"name": "x", "slug": unique("p"), "currency": "eur"},
                {"name": "x", "slug": unique("p"), "price_monthly": -1}, {"name": "x", "slug": "Bad Slug"},
                {"name": "x", "slug": unique("p"), "price_monthly": 9.99}, {"slug": unique("p")}):
        assert (await client.post("/v1/platform/plans", headers=platform_admin.headers, json=bad)).status_code == 422, bad
    for bad in ({"name": None}, {"is_active": None}, {"max_staff": -3}, {"unknown": 1}):
        response = await client.patch(f"/v1/platform/plans/{plan['id']}", headers=platform_admin.headers, json=bad)
        assert response.status_code == 422, bad
    missing = await client.get(f"/v1/platform/plans/{uuid.uuid4()}", headers=platform_admin.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "plan_not_found"


async def test_a_retired_plan_stays_with_its_organizations_but_takes_no_new_ones(client, platform_admin):
    plan = await _new_plan(client, platform_admin, max_venues=None)
    org = await create_org(client, platform_admin)
    assert (await patch_org(client, platform_admin, org.organization_id, plan=plan["slug"])).status_code == 200

    retired = await client.patch(f"/v1/platform/plans/{plan['id']}", headers=platform_admin.headers,
                                 json={"is_active": False})
    assert retired.status_code == 200
    assert retired.json()["is_active"] is False and retired.json()["organizations_count"] == 1

    detail = await client.get(f"/v1/platform/organizations/{org.organization_id}", headers=platform_admin.headers)
    assert detail.json()["plan"] == plan["slug"]
    # the organization keeps working on it
    venue = await client.post("/v1/venues", headers=org.headers, json={"name": "Annex", "timezone": "UTC"})
    assert venue.status_code == 201, venue.text

    other = await create_org(client, platform_admin)
    moved = await patch_org(client, platform_admin, other.organization_id, plan=plan["slug"])
    assert moved.status_code == 422 and moved.json()["code"] == "unknown_plan"
    created = await client.post("/v1/platform/organizations", headers=platform_admin.headers, json={
        "name": "Late", "plan": plan["slug"], "owner": {"email": f"{unique('late')}@example.com", "full_name": "L"}})
    assert created.status_code == 422 and created.json()["code"] == "unknown_plan"
    active_only = await client.get("/v1/platform/plans", headers=platform_admin.headers, params={"active": "true"})
    assert plan["slug"] not in [p["slug"] for p in active_only.json()["items"]]


async def test_venue_limit_of_the_plan_until_the_plan_grows(client, platform_admin):
    org = await create_org(client, platform_admin, plan="free")  # max_venues 1; the default venue is it
    refused = await client.post("/v1/venues", headers=org.headers, json={"name": "Second", "timezone": "UTC"})
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["code"] == "plan_limit_reached" and problem["limit"] == "max_venues"
    assert "max_venues" in problem["detail"]
    listed = await client.get("/v1/venues", headers=org.headers)
    assert len(listed.json()["items"]) == 1

    assert (await patch_org(client, platform_admin, org.organization_id, plan="pro")).status_code == 200
    allowed = await client.post("/v1/venues", headers=org.headers, json={"name": "Second", "timezone": "UTC"})
    assert allowed.status_code == 201, allowed.text


async def test_monthly_booking_limit_refuses_holds_and_staff_bookings(client, platform_admin):
    plan = await _new_plan(client, platform_admin, max_bookings=2, max_venues=None)
    org = await create_org(client, platform_admin)
    activity = await make_activity(client, org, capacity=20)
    session = await future_session(client, org, activity)
    assert (await patch_org(client, platform_admin, org.organization_id, plan=plan["slug"])).status_code == 200

    await book(client, org, session["id"], spots=1)
    pending = await hold(client, org, session["id"], spots=1, email="second@example.com")
    assert pending.status_code == 201  # one booking so far: still room

    done = await checkout(client, org, pending.json()["reservation_id"], email="second@example.com")
    assert done.status_code == 201  # a customer mid-checkout is not turned away
    refused = await hold(client, org, session["id"], spots=1, email="third@example.com")
    assert refused.status_code == 403
    assert refused.json()["code"] == "plan_limit_reached" and refused.json()["limit"] == "max_bookings"

    staff = await client.post("/v1/bookings", headers=org.headers, json={
        "session_id": session["id"], "guest_count": 1,
        "customer": {"email": "walkin@example.com", "first_name": "Walk", "last_name": "In"}})
    assert staff.status_code == 403
    assert staff.json()["code"] == "plan_limit_reached" and staff.json()["limit"] == "max_bookings"

    # nothing was taken by the refused requests
    detail = await client.get(f"/v1/sessions/{session['id']}", headers=org.headers)
    assert detail.json()["capacity_remaining"] == 18

    # the limit is read live: raising it lets the business book again
    raised = await client.patch(f"/v1/platform/plans/{plan['id']}", headers=platform_admin.headers,
                                json={"max_bookings": 3})
    assert raised.status_code == 200
    staff = await client.post("/v1/bookings", headers=org.headers, json={
        "session_id": session["id"], "guest_count": 1,
        "customer": {"email": "walkin@example.com", "first_name": "Walk", "last_name": "In"}})
    assert staff.status_code == 201, staff.text
    assert (await hold(client, org, session["id"], email="fourth@example.com")).status_code == 403


async def test_the_plan_and_flag_lists_page_with_limit_and_cursor(client, platform_admin):
    """API.md: every list takes ?limit=&cursor=."""
    for n in range(3):
        await client.post("/v1/platform/feature-flags", headers=platform_admin.headers,
                          json={"name": unique(f"paged-{n}"), "enabled": False, "rollout_percent": 0})
        assert (await client.post("/v1/platform/plans", headers=platform_admin.headers, json={
            "name": unique("Paged"), "slug": unique("paged"), "price_monthly": 1000 * n})).status_code == 201

    for path in ("/v1/platform/plans", "/v1/platform/feature-flags"):
        whole = (await client.get(path, headers=platform_admin.headers, params={"limit": 200})).json()
        assert whole["next_cursor"] is None and len(whole["items"]) >= 3
        paged, cursor = [], None
        while True:
            page = (await client.get(path, headers=platform_admin.headers,
                                     params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
            assert len(page["items"]) <= 2
            paged += page["items"]
            if not (cursor := page["next_cursor"]):
                break
        assert [i["id"] for i in paged] == [i["id"] for i in whole["items"]], path
