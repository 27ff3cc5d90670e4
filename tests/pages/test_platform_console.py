"""The platform console (/platform) without a browser: organizations with their metrics, onboarding
an organization with its owner, suspension (its widget stops), plan changes, plans, feature flags,
access grants, the audit log, and who may use it at all."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import text

from tests.factories import PASSWORD, book, future_session, make_activity, make_tenant, unique
from tests.pages.helpers import PageClient


def plain(html: str) -> str:
    """The page's text, tags gone and spaces squeezed: what a reader sees."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&lt;", "<").replace("&gt;", ">")


def error_at(html: str, field: str) -> str:
    """The error message shown next to `field` (tied to it with aria-describedby)."""
    found = re.search(rf'<p class="error" id="e-{re.escape(field)}">(.*?)</p>', html, re.S)
    assert found, f"no error at {field}: {plain(html)[:2000]}"
    assert f'aria-describedby="' in html and f"e-{field}" in html
    return found.group(1).strip()


async def console(app, platform_admin) -> PageClient:
    browser = PageClient(app)
    await browser.sign_in(platform_admin.email, PASSWORD)
    return browser


async def org_row(client, platform_admin, slug: str) -> dict:
    listed = await client.get("/v1/platform/organizations", headers=platform_admin.headers, params={"q": slug})
    items = [o for o in listed.json()["items"] if o["slug"] == slug]
    return items[0] if items else {}


async def test_the_organizations_list_shows_each_ones_metrics_the_platform_totals_search_and_pages(
        app, client, platform_admin):
    tenant = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant, price_amount=4200)
    await book(client, tenant, (await future_session(client, tenant, activity))["id"], spots=2)
    slug = (await client.get(f"/v1/platform/organizations/{tenant.organization_id}",
                             headers=platform_admin.headers)).json()["slug"]
    async with await console(app, platform_admin) as browser:
        page = await browser.get("/platform", params={"q": slug})
        assert page.status_code == 200
        text_ = plain(page.text)
        assert f"Org {slug}" in text_ and "Enterprise" in text_
        row = re.search(rf'<tr>\s*<td><a href="/platform/organizations/{tenant.organization_id}">.*?</tr>', page.text,
                        re.S).group(0)
        cells = [plain(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        # venues, staff, bookings this month, revenue this month
        assert cells[3:7] == ["1", "1", "1", "84.00 USD"], cells
        assert "active" in cells[2]
        # The platform's totals sit on top.
        assert "organizations ·" in text_ and "bookings this month ·" in text_
        # Filters: a suspended-only view leaves this active one out.
        assert f"Org {slug}" not in plain((await browser.get("/platform", params={"q": slug, "status": "suspended"})).text)
        # Pages: a cursor link leads on, keeping the search; three matches two at a time.
        token = unique("paged")
        for n in range(3):
            created = await client.post("/v1/platform/organizations", headers=platform_admin.headers, json={
                "name": f"{token} {n}", "slug": f"{token}-{n}", "plan": "free",
                "owner": {"email": f"o{n}@{token}.example.com", "full_name": "O", "password": PASSWORD}})
            assert created.status_code == 201, created.text
        first = await browser.get("/platform", params={"q": token, "limit": 2})
        assert re.findall(rf">({token} \d)<", first.text) == [f"{token} 2", f"{token} 1"]  # newest first
        next_link = re.search(r'href="(/platform\?[^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&")
        second = await browser.get(next_link)
        assert re.findall(rf">({token} \d)<", second.text) == [f"{token} 0"]
        assert "First page" in second.text and 'rel="next"' not in second.text
        tampered = await browser.get("/platform", params={"cursor": "not-a-cursor"})
        assert tampered.status_code == 422 and tampered.headers["content-type"].startswith("text/html")


async def test_creating_an_organization_with_its_owner_emails_a_temporary_password(app, client, platform_admin,
                                                                                   owner_engine):
    slug = unique("made")
    email = f"Boss@{slug}.example.com"
    async with await console(app, platform_admin) as browser:
        form = await browser.get("/platform/organizations/new")
        assert form.status_code == 200 and 'name="owner_email"' in form.text and 'name="password"' not in form.text
        # Mistakes come back at their fields, with what was typed, and nothing is created.
        bad = await browser.post("/platform/organizations", {
            "name": "Made Here", "slug": "Not A Slug!", "plan": "free", "timezone": "Mars/Olympus",
            "currency": "usd", "owner_email": "not-an-email", "owner_name": ""})
        assert bad.status_code == 422
        assert "lowercase letters" in error_at(bad.text, "slug")
        assert error_at(bad.text, "owner_email") == "Enter a valid email address."
        assert "IANA time zone" in error_at(bad.text, "timezone")
        assert error_at(bad.text, "owner_name")
        assert 'value="Made Here"' in bad.text
        assert not await org_row(client, platform_admin, "not-a-slug")

        created = await browser.post("/platform/organizations", {
            "name": "Made Here", "slug": slug, "plan": "free", "timezone": "Europe/Paris",
            "currency": "eur", "owner_email": email, "owner_name": "Bea Boss"})
        assert created.status_code == 303, plain(created.text)
        org = await org_row(client, platform_admin, slug)
        assert org and created.headers["location"] == f"/platform/organizations/{org['id']}"
        assert org["name"] == "Made Here" and org["currency"] == "EUR" and org["plan"] == "free"

        page = await browser.get(created.headers["location"])
        shown = plain(page.text)
        assert "temporary password" in shown and email.lower() in shown  # the flash
        assert "has not signed in yet" in shown and "temporary password not yet replaced" in shown
        assert "Europe/Paris" in shown  # its first venue

        # The same slug again: refused at the field, nothing new.
        again = await browser.post("/platform/organizations", {
            "name": "Other", "slug": slug, "plan": "free", "timezone": "UTC", "currency": "USD",
            "owner_email": f"x@{slug}.example.com", "owner_name": "X"})
        assert again.status_code == 409 and "is taken" in error_at(again.text, "slug")
        # An owner email already in use: refused at the owner's email.
        taken = await browser.post("/platform/organizations", {
            "name": "Other", "slug": unique("other"), "plan": "free", "timezone": "UTC", "currency": "USD",
            "owner_email": email, "owner_name": "X"})
        assert taken.status_code == 409 and "already exists" in error_at(taken.text, "owner_email")

    with owner_engine.connect() as conn:
        owner = conn.execute(text("SELECT role, must_change_password FROM users WHERE email = :e"),
                             {"e": email.lower()}).one()
        mail = conn.execute(text("SELECT kind, payload FROM notification_outbox WHERE recipient = :e"),
                            {"e": email.lower()}).all()
        orgs = conn.execute(text("SELECT count(*) FROM organizations WHERE name = 'Other'")).scalar_one()
    assert owner.role == "super-admin" and owner.must_change_password is True
    assert [m.kind for m in mail] == ["welcome"] and len(mail[0].payload["temporary_password"]) >= 12
    assert orgs == 0


async def test_suspending_stops_the_widget_and_reactivating_brings_it_back(app, client, platform_admin):
    tenant = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    org_page = f"/platform/organizations/{tenant.organization_id}"

    async def widget_hold():
        return await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations",
                                 json={"session_id": session["id"], "spots": 1, "customer_email": "a@example.com"})

    async with await console(app, platform_admin) as browser:
        # Without ticking the confirmation, nothing happens.
        unconfirmed = await browser.post(f"{org_page}/status", {"status": "suspended"})
        assert unconfirmed.status_code == 422 and "Tick the box" in error_at(unconfirmed.text, "confirm")
        assert (await widget_hold()).status_code == 201

        suspended = await browser.post(f"{org_page}/status", {"status": "suspended", "confirm": "yes"})
        assert suspended.status_code == 303 and suspended.headers["location"] == org_page
        refused = await widget_hold()
        assert refused.status_code == 403 and refused.json()["code"] == "organization_suspended"
        page = plain((await browser.get(org_page)).text)
        assert "Reactivate organization" in page and "Suspended since" in page

        reactivated = await browser.post(f"{org_page}/status", {"status": "active"})
        assert reactivated.status_code == 303
        assert (await widget_hold()).status_code == 201
        assert "Suspend organization" in (await browser.get(org_page)).text


async def test_changing_an_organizations_plan(app, client, platform_admin):
    tenant = await make_tenant(client, platform_admin)
    org_page = f"/platform/organizations/{tenant.organization_id}"
    async with await console(app, platform_admin) as browser:
        changed = await browser.post(f"{org_page}/plan", {"plan": "free"})
        assert changed.status_code == 303
        detail = (await client.get(f"/v1/platform/organizations/{tenant.organization_id}",
                                   headers=platform_admin.headers)).json()
        assert detail["plan"] == "free"
        unknown = await browser.post(f"{org_page}/plan", {"plan": "no-such-plan"})
        assert unknown.status_code == 422 and "No active plan" in error_at(unknown.text, "plan")
        missing = await browser.get(f"/platform/organizations/{uuid.uuid4()}")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")


async def test_plans_are_created_and_edited_with_errors_at_their_fields(app, client, platform_admin):
    slug = unique("plan")
    async with await console(app, platform_admin) as browser:
        bad = await browser.post("/platform/plans", {"name": "", "slug": "Bad Slug", "price_monthly": "12.345",
                                                     "currency": "US", "max_venues": "zero", "is_active": "on"})
        assert bad.status_code == 422
        for field in ("name", "slug", "price_monthly", "currency", "max_venues"):
            assert error_at(bad.text, field), field
        created = await browser.post("/platform/plans", {"name": "Growth", "slug": slug, "price_monthly": "49.90",
                                                         "currency": "usd", "max_venues": "3", "max_staff": "",
                                                         "max_bookings": "500", "is_active": "on"})
        assert created.status_code == 303 and created.headers["location"] == "/platform/plans"
        listing = await browser.get("/platform/plans")
        assert slug in listing.text and "49.90 USD" in plain(listing.text)
        plan = next(p for p in (await client.get("/v1/platform/plans", headers=platform_admin.headers)).json()["items"]
                    if p["slug"] == slug)
        assert (plan["price_monthly"], plan["max_venues"], plan["max_staff"], plan["max_bookings"]) == (4990, 3, None, 500)

        edit = await browser.get(f"/platform/plans/{plan['id']}")
        assert 'value="49.90"' in edit.text and 'value="Growth"' in edit.text
        refused = await browser.post(f"/platform/plans/{plan['id']}", {
            "name": "Growth", "slug": slug, "price_monthly": "-5", "currency": "USD", "max_venues": "3",
            "max_bookings": "500", "is_active": "on"})
        assert refused.status_code == 422 and "negative" in error_at(refused.text, "price_monthly")
        taken = await browser.post(f"/platform/plans/{plan['id']}", {
            "name": "Growth", "slug": "free", "price_monthly": "49.90", "currency": "USD", "is_active": "on"})
        assert taken.status_code == 409 and "exists" in error_at(taken.text, "slug")
        saved = await browser.post(f"/platform/plans/{plan['id']}", {
            "name": "Growth+", "slug": slug, "price_monthly": "59", "currency": "USD", "max_venues": "",
            "max_bookings": "500"})  # is_active unticked: retired
        assert saved.status_code == 303
    plan = (await client.get(f"/v1/platform/plans/{plan['id']}", headers=platform_admin.headers)).json()
    assert (plan["name"], plan["price_monthly"], plan["max_venues"], plan["is_active"]) == ("Growth+", 5900, None, False)


async def test_feature_flags_are_created_and_edited_with_errors_at_their_fields(app, client, platform_admin):
    tenant = await make_tenant(client, platform_admin)
    name = f"pages.{uuid.uuid4().hex[:8]}"
    async with await console(app, platform_admin) as browser:
        bad = await browser.post("/platform/feature-flags", {"name": "Bad Name!", "rollout_percent": "150",
                                                             "org_whitelist": "not-an-id"})
        assert bad.status_code == 422
        assert "lowercase" in error_at(bad.text, "name")
        assert "not an organization id" in error_at(bad.text, "org_whitelist")
        created = await browser.post("/platform/feature-flags", {"name": name, "description": "New calendar",
                                                                 "rollout_percent": "10"})
        assert created.status_code == 303
        assert name in (await browser.get("/platform/feature-flags")).text
        duplicate = await browser.post("/platform/feature-flags", {"name": name, "rollout_percent": "0"})
        assert duplicate.status_code == 409 and "exists" in error_at(duplicate.text, "name")
        flag = next(f for f in (await client.get("/v1/platform/feature-flags", headers=platform_admin.headers)).json()["items"]
                    if f["name"] == name)
        assert flag["enabled"] is False and flag["rollout_percent"] == 10

        too_much = await browser.post(f"/platform/feature-flags/{flag['id']}", {"rollout_percent": "101",
                                                                               "enabled": "on"})
        assert too_much.status_code == 422 and error_at(too_much.text, "rollout_percent")
        saved = await browser.post(f"/platform/feature-flags/{flag['id']}", {
            "description": "New calendar", "enabled": "on", "rollout_percent": "50",
            "org_whitelist": f"{tenant.organization_id}\n{tenant.organization_id}"})
        assert saved.status_code == 303
    flag = (await client.get(f"/v1/platform/feature-flags/{flag['id']}", headers=platform_admin.headers)).json()
    assert (flag["enabled"], flag["rollout_percent"], flag["org_whitelist"]) == (True, 50, [tenant.organization_id])


async def test_access_grants_are_given_with_a_reason_listed_with_their_end_and_revoked(app, client, platform_admin):
    tenant = await make_tenant(client, platform_admin)
    org_page = f"/platform/organizations/{tenant.organization_id}"
    async with await console(app, platform_admin) as browser:
        bad = await browser.post(f"{org_page}/access-grants", {"reason": " x ", "duration_minutes": "5000"})
        assert bad.status_code == 422
        assert error_at(bad.text, "reason") and error_at(bad.text, "duration_minutes")
        granted = await browser.post(f"{org_page}/access-grants", {"reason": "Ticket 4711: widget setup",
                                                                  "duration_minutes": "30"})
        assert granted.status_code == 303 and "Access%20granted%20until" in granted.headers["set-cookie"]
        page = await browser.get(org_page)
        assert "Ticket 4711: widget setup" in page.text
        revoke = re.search(rf'action="({org_page}/access-grants/[0-9a-f-]+/revoke)"', page.text).group(1)
        # While it lasts, the admin may act in the organization (the API's X-Organization-Id).
        inside = await client.get("/v1/venues", headers={**platform_admin.headers,
                                                         "X-Organization-Id": tenant.organization_id})
        assert inside.status_code == 200
        assert (await browser.post(revoke)).status_code == 303
        page = plain((await browser.get(org_page)).text)
        assert "revoked" in page and "Revoke" not in page.replace("revoked", "")
        again = await browser.post(revoke)
        assert again.status_code == 303 and "already%20ended" in again.headers["set-cookie"]
        outside = await client.get("/v1/venues", headers={**platform_admin.headers,
                                                          "X-Organization-Id": tenant.organization_id})
        assert outside.status_code == 404


async def test_the_audit_log_shows_what_the_console_did_with_filters(app, client, platform_admin):
    tenant = await make_tenant(client, platform_admin)
    org_page = f"/platform/organizations/{tenant.organization_id}"
    slug = unique("audited")
    async with await console(app, platform_admin) as browser:
        await browser.post(f"{org_page}/status", {"status": "suspended", "confirm": "yes"})
        await browser.post(f"{org_page}/status", {"status": "active"})
        await browser.post(f"{org_page}/access-grants", {"reason": "Audit check", "duration_minutes": "5"})
        await browser.post("/platform/plans", {"name": "Audited", "slug": slug, "price_monthly": "1",
                                               "currency": "USD", "is_active": "on"})
        mine = await browser.get("/platform/audit-log", params={"organization_id": tenant.organization_id})
        assert mine.status_code == 200
        actions = re.findall(r"<td><code>([a-z_.]+)</code></td>", mine.text)
        assert actions[:3] == ["access_grant.created", "organization.reactivated", "organization.suspended"], actions
        assert platform_admin.email in mine.text
        plans_only = await browser.get("/platform/audit-log", params={"action": "plan.*"})
        actions = re.findall(r"<td><code>([a-z_.]+)</code></td>", plans_only.text)
        assert actions and set(actions) <= {"plan.created", "plan.updated"} and slug in plans_only.text
        bad = await browser.get("/platform/audit-log", params={"start": "yesterday", "organization_id": "x"})
        assert bad.status_code == 422 and error_at(bad.text, "start") and error_at(bad.text, "organization_id")


async def test_only_the_platform_team_may_use_the_console(app, client, platform_admin, tenant):
    async with PageClient(app) as owner:
        await owner.sign_in(tenant.owner_email, PASSWORD)
        for path in ("/platform", "/platform/plans", "/platform/feature-flags", "/platform/audit-log",
                     f"/platform/organizations/{tenant.organization_id}"):
            page = await owner.get(path)
            assert page.status_code == 403, path
            assert page.headers["content-type"].startswith("text/html") and "platform team" in page.text
        refused = await owner.post(f"/platform/organizations/{tenant.organization_id}/status", {"status": "suspended",
                                                                                              "confirm": "yes"})
        assert refused.status_code == 403
    async with PageClient(app) as stranger:
        assert (await stranger.get("/platform")).headers["location"] == "/auth/login?next=/platform"
    # A form without the CSRF token (or from another site) changes nothing.
    slug = unique("csrf")
    async with await console(app, platform_admin) as browser:
        await browser.csrf()
        forged = await browser.http.post("/platform/organizations", data={
            "name": "Forged", "slug": slug, "plan": "free", "timezone": "UTC", "currency": "USD",
            "owner_email": f"o@{slug}.example.com", "owner_name": "O"})
        assert forged.status_code == 403 and "form expired" in forged.text
        elsewhere = await browser.post(f"/platform/organizations/{tenant.organization_id}/status",
                                       {"status": "suspended", "confirm": "yes"},
                                       headers={"Origin": "https://evil.example"})
        assert elsewhere.status_code == 403
    assert not await org_row(client, platform_admin, slug)
    detail = (await client.get(f"/v1/platform/organizations/{tenant.organization_id}",
                               headers=platform_admin.headers)).json()
    assert detail["status"] == "active"
