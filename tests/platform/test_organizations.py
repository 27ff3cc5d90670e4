"""The platform's view of organizations: live metrics, filters, suspension, plan and subscription
changes, all audited."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from tests.factories import add_staff, book, future_session, hold, make_activity, unique
from tests.platform.helpers import create_org, patch_org


async def _listed(client, admin, org, **params):
    response = await client.get("/v1/platform/organizations", headers=admin.headers,
                                params={"q": org.extra["slug"], **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_list_and_detail_show_live_metrics_that_move_with_the_business(client, platform_admin):
    org = await create_org(client, platform_admin)
    [row] = await _listed(client, platform_admin, org)
    assert row["id"] == org.organization_id
    assert (row["status"], row["plan"], row["subscription_status"]) == ("active", "enterprise", "trial")
    assert datetime.fromisoformat(row["trial_ends_at"]) > datetime.now(timezone.utc) + timedelta(days=13)
    assert {k: row[k] for k in ("venues_count", "staff_count", "bookings_this_month", "revenue_this_month")} == {
        "venues_count": 1, "staff_count": 1, "bookings_this_month": 0, "revenue_this_month": 0}

    activity = await make_activity(client, org, price_amount=2500)
    session = await future_session(client, org, activity)
    first = await book(client, org, session["id"], spots=2)
    await book(client, org, session["id"], spots=1, email="second@example.com")
    await add_staff(client, org, "manager")
    extra_venue = await client.post("/v1/venues", headers=org.headers,
                                    json={"name": "Second site", "timezone": "Europe/Paris"})
    assert extra_venue.status_code == 201, extra_venue.text

    detail = await client.get(f"/v1/platform/organizations/{org.organization_id}", headers=platform_admin.headers)
    assert detail.status_code == 200
    assert {k: detail.json()[k] for k in ("venues_count", "staff_count", "bookings_this_month",
                                          "revenue_this_month")} == {
        "venues_count": 2, "staff_count": 2, "bookings_this_month": 2, "revenue_this_month": 7500}

    # Revenue stands beside the organization's currency: a booking in another one is not added in.
    euros = await make_activity(client, org, price_amount=9900, currency="EUR")
    await book(client, org, (await future_session(client, org, euros))["id"], email="euro@example.com")
    [row] = await _listed(client, platform_admin, org)
    assert (row["currency"], row["bookings_this_month"], row["revenue_this_month"]) == ("USD", 3, 7500)

    cancelled = await client.post(f"/v1/bookings/{first['id']}/cancel", headers=org.headers, json={"refund": "none"})
    assert cancelled.status_code == 200, cancelled.text
    [row] = await _listed(client, platform_admin, org)
    assert (row["bookings_this_month"], row["revenue_this_month"]) == (2, 2500)


async def test_listing_filters_by_status_and_search_and_pages(client, platform_admin):
    token = uuid.uuid4().hex[:8]
    orgs = [await create_org(client, platform_admin, name=f"Paging {token} {n}") for n in range(3)]
    assert (await patch_org(client, platform_admin, orgs[0].organization_id, status="suspended")).status_code == 200

    seen, cursor = [], None
    while True:
        params = {"q": token.upper(), "limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/v1/platform/organizations", headers=platform_admin.headers, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= 2
        seen += [item["id"] for item in body["items"]]
        if not (cursor := body["next_cursor"]):
            break
    # newest first, each once, and only the matching organizations
    assert seen == [o.organization_id for o in reversed(orgs)]

    suspended = await client.get("/v1/platform/organizations", headers=platform_admin.headers,
                                 params={"q": token, "status": "suspended"})
    assert [i["id"] for i in suspended.json()["items"]] == [orgs[0].organization_id]
    active = await client.get("/v1/platform/organizations", headers=platform_admin.headers,
                              params={"q": token, "status": "active"})
    assert {i["id"] for i in active.json()["items"]} == {orgs[1].organization_id, orgs[2].organization_id}

    # a search term is text, not a pattern
    wildcard = await client.get("/v1/platform/organizations", headers=platform_admin.headers,
                                params={"q": f"{token}%_"})
    assert wildcard.json()["items"] == []
    bad = await client.get("/v1/platform/organizations", headers=platform_admin.headers, params={"status": "deleted"})
    assert bad.status_code == 422


async def test_suspension_stops_new_holds_until_reactivated_and_is_audited(client, platform_admin, audit_rows):
    org = await create_org(client, platform_admin)
    activity = await make_activity(client, org)
    session = await future_session(client, org, activity)
    live_hold = await hold(client, org, session["id"])
    assert live_hold.status_code == 201

    suspended = await patch_org(client, platform_admin, org.organization_id, status="suspended")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended" and suspended.json()["suspended_at"] is not None

    refused = await hold(client, org, session["id"])
    assert refused.status_code == 403
    assert refused.json()["code"] == "organization_suspended"
    listed = await client.get("/v1/platform/organizations", headers=platform_admin.headers,
                              params={"status": "suspended", "q": org.extra["slug"]})
    assert [i["id"] for i in listed.json()["items"]] == [org.organization_id]

    reactivated = await patch_org(client, platform_admin, org.organization_id, status="active")
    assert reactivated.status_code == 200
    assert reactivated.json()["status"] == "active" and reactivated.json()["suspended_at"] is None
    assert (await hold(client, org, session["id"])).status_code == 201

    rows = audit_rows(org.organization_id)
    actions = [r["action"] for r in rows if r["action"].startswith("organization.")]
    assert actions == ["organization.suspended", "organization.reactivated"]
    suspend_row = next(r for r in rows if r["action"] == "organization.suspended")
    assert suspend_row["actor_type"] == "platform" and suspend_row["actor_label"] == platform_admin.email
    assert suspend_row["target_type"] == "organization" and suspend_row["target_id"] == org.organization_id
    assert suspend_row["changes"]["status"] == {"from": "active", "to": "suspended"}
    assert suspend_row["changes"]["suspended_at"]["from"] is None


async def test_plan_subscription_trial_and_fee_changes_are_validated_and_audited(client, platform_admin, audit_rows):
    org = await create_org(client, platform_admin, plan="free")
    org_id = org.organization_id
    trial_end = (datetime.now(timezone.utc) + timedelta(days=30)).replace(microsecond=0)
    changed = await patch_org(client, platform_admin, org_id, plan="pro", subscription_status="active",
                              trial_ends_at=trial_end.isoformat(), application_fee_percentage="2.5")
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["plan"], body["subscription_status"]) == ("pro", "active")
    assert datetime.fromisoformat(body["trial_ends_at"]) == trial_end
    assert float(body["application_fee_percentage"]) == 2.5

    [row] = audit_rows(org_id, "organization.updated")
    assert row["actor_type"] == "platform"
    assert row["changes"]["plan"] == {"from": "free", "to": "pro"}
    assert row["changes"]["subscription_status"] == {"from": "trial", "to": "active"}
    assert set(row["changes"]) == {"plan", "subscription_status", "trial_ends_at", "application_fee_percentage"}

    # No way back to a trial; a cancelled subscription can only be taken up again.
    back = await patch_org(client, platform_admin, org_id, subscription_status="trial")
    assert back.status_code == 409 and back.json()["code"] == "invalid_subscription_transition"
    for step in ("past_due", "suspended", "cancelled"):
        assert (await patch_org(client, platform_admin, org_id, subscription_status=step)).status_code == 200
    stuck = await patch_org(client, platform_admin, org_id, subscription_status="past_due")
    assert stuck.status_code == 409 and stuck.json()["allowed"] == ["active"]
    assert (await patch_org(client, platform_admin, org_id, subscription_status="active")).json()[
        "subscription_status"] == "active"

    # Nothing half-written on a refused request; the same value twice writes nothing.
    mixed = await patch_org(client, platform_admin, org_id, plan="free", subscription_status="trial")
    assert mixed.status_code == 409
    detail = await client.get(f"/v1/platform/organizations/{org_id}", headers=platform_admin.headers)
    assert detail.json()["plan"] == "pro"
    before = len(audit_rows(org_id))
    assert (await patch_org(client, platform_admin, org_id, plan="pro")).status_code == 200
    assert len(audit_rows(org_id)) == before

    for bad in ({"plan": "no-such-plan"}, {"status": "closed"}, {"subscription_status": "gone"},
                {"trial_ends_at": "2030-01-01T00:00:00"}, {"application_fee_percentage": 101},
                {"application_fee_percentage": "1.234"}, {"status": None}, {"name": "renamed"}):
        response = await patch_org(client, platform_admin, org_id, **bad)
        assert response.status_code == 422, (bad, response.text)
    assert (await patch_org(client, platform_admin, org_id, trial_ends_at=None)).json()["trial_ends_at"] is None


async def test_unknown_organization_is_404_and_only_the_platform_may_look(client, platform_admin, tenant):
    missing = uuid.uuid4()
    assert (await client.get(f"/v1/platform/organizations/{missing}", headers=platform_admin.headers)).status_code == 404
    assert (await patch_org(client, platform_admin, str(missing), status="suspended")).status_code == 404
    for method, path, body in [
        ("GET", "/v1/platform/organizations", None),
        ("PATCH", f"/v1/platform/organizations/{tenant.organization_id}", {"status": "suspended"}),
        ("GET", "/v1/platform/stats", None),
        ("GET", "/v1/platform/plans", None),
        ("POST", "/v1/platform/plans", {"name": "Cheap", "slug": unique("cheap")}),
        ("GET", "/v1/platform/feature-flags", None),
        ("POST", "/v1/platform/feature-flags", {"name": unique("flag")}),
        ("POST", f"/v1/platform/organizations/{tenant.organization_id}/access-grants",
         {"reason": "curious", "duration_minutes": 5}),
        ("GET", f"/v1/platform/organizations/{tenant.organization_id}/access-grants", None),
    ]:
        response = await client.request(method, path, headers=tenant.headers, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["code"] == "permission_denied"
    detail = await client.get(f"/v1/platform/organizations/{tenant.organization_id}", headers=platform_admin.headers)
    assert detail.json()["status"] == "active"
