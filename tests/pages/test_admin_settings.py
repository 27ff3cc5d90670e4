"""Staff and roles, API keys, promo codes and settings pages, driven as a browser would (no browser):
what each page shows, what changed in the data, the API's permission refusals, CSRF refusal, and bad
input answered with a message at its field and nothing written."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from html import unescape

import httpx
from sqlalchemy import text

from bookingtms.bookings.service import refund_percent
from tests.factories import PASSWORD, add_staff, bearer, book, future_session, make_activity, unique
from tests.pages.helpers import PageClient
from tests.payments.conftest import form as stripe_form
from tests.payments.conftest import stripe_api, stripe_settings  # noqa: F401  (fixtures)


def one(owner_engine, sql: str, **params):
    with owner_engine.connect() as conn:
        return conn.execute(text(sql), params).first()


def all_rows(owner_engine, sql: str, **params):
    with owner_engine.connect() as conn:
        return conn.execute(text(sql), params).all()


async def signed_in(app, email: str, password: str = PASSWORD) -> PageClient:
    pc = PageClient(app)
    await pc.sign_in(email, password)
    return pc


async def member_email(client: httpx.AsyncClient, tenant, role: str) -> str:
    """A member of `role` with the test password; returns their email."""
    token = await add_staff(client, tenant, role)
    return (await client.get("/v1/me", headers=bearer(token))).json()["email"]


async def follow(pc: PageClient, response: httpx.Response) -> httpx.Response:
    assert response.status_code == 303, response.text
    return await pc.get(response.headers["location"])


def text_of(response: httpx.Response) -> str:
    return unescape(response.text)


def assert_unique_ids(html: str) -> None:
    """Labels and error messages point at ids: each must name one element."""
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), sorted(i for i in set(ids) if ids.count(i) > 1)


# ---------------------------------------------------------------------------------------------
# Staff and roles
# ---------------------------------------------------------------------------------------------
async def test_invite_change_role_and_deactivate(app, client, tenant, owner_engine):
    email = f"{unique('desk')}@example.com"
    async with await signed_in(app, tenant.owner_email) as pc:
        page = await pc.get("/admin/staff")
        assert page.status_code == 200 and tenant.owner_email in page.text
        form = await pc.get("/admin/staff/new")
        assert form.status_code == 200 and 'value="super-admin"' in form.text  # the owner may grant every role

        done = await follow(pc, await pc.post("/admin/staff", {"email": email.upper(), "full_name": "Dee Desk",
                                                              "role": "staff"}))
        assert f"{email} was invited as staff" in text_of(done)
        assert email in done.text and "Never" in done.text  # listed, never signed in
        rows = all_rows(owner_engine, "SELECT kind, payload FROM notification_outbox WHERE recipient = :e", e=email)
        assert [r.kind for r in rows] == ["staff_invite"]
        temporary = rows[0].payload["temporary_password"]
        login = await client.post("/v1/auth/login", json={"email": email, "password": temporary})
        assert login.status_code == 200 and login.json().get("must_change_password") is True

        # The same email again: the message at the email field, nothing more written.
        again = await pc.post("/admin/staff", {"email": email, "full_name": "Dee Again", "role": "staff"})
        assert again.status_code == 409 and "already exists" in text_of(again) and 'id="e-email"' in again.text
        assert len(all_rows(owner_engine, "SELECT 1 FROM notification_outbox WHERE recipient = :e", e=email)) == 1
        bad = await pc.post("/admin/staff", {"email": "not-an-email", "full_name": "", "role": "staff"})
        assert bad.status_code == 422 and 'id="e-email"' in bad.text and 'id="e-full_name"' in bad.text

        user_id = one(owner_engine, "SELECT id FROM users WHERE email = :e", e=email).id
        edit = await pc.get(f"/admin/staff/{user_id}")
        assert edit.status_code == 200 and "Deactivate" in edit.text
        assert_unique_ids(edit.text)
        changed = await follow(pc, await pc.post(f"/admin/staff/{user_id}", {"full_name": "Dee Manager",
                                                                           "role": "manager"}))
        assert "Saved" in changed.text
        assert one(owner_engine, "SELECT role, full_name FROM users WHERE id = :i", i=user_id) == ("manager",
                                                                                                 "Dee Manager")

        gone = await follow(pc, await pc.post(f"/admin/staff/{user_id}/deactivate"))
        assert "deactivated" in gone.text
        assert one(owner_engine, "SELECT is_active FROM users WHERE id = :i", i=user_id).is_active is False
    refused = await client.post("/v1/auth/login", json={"email": email, "password": temporary})
    assert refused.status_code == 401
    async with PageClient(app) as pc:
        page_login = await pc.post("/auth/login", {"email": email, "password": temporary})
        assert page_login.status_code == 401 and "btms_access" not in page_login.headers.get("set-cookie", "")


async def test_an_org_admin_cannot_grant_a_role_above_their_own(app, client, tenant, owner_engine):
    org_admin = await member_email(client, tenant, "org-admin")
    email = f"{unique('boss')}@example.com"
    async with await signed_in(app, org_admin) as pc:
        form = await pc.get("/admin/staff/new")
        assert form.status_code == 200
        assert 'value="org-admin"' in form.text and 'value="super-admin"' not in form.text
        refused = await pc.post("/admin/staff", {"email": email, "full_name": "Would Be Boss", "role": "super-admin"})
        assert refused.status_code == 403
        assert "above your own" in text_of(refused) and 'id="e-role"' in refused.text
        assert one(owner_engine, "SELECT id FROM users WHERE email = :e", e=email) is None
        assert not all_rows(owner_engine, "SELECT 1 FROM notification_outbox WHERE recipient = :e", e=email)

        # Nor demote the super-admin above them.
        owner = one(owner_engine, "SELECT id FROM users WHERE email = :e", e=tenant.owner_email).id
        page = await pc.get(f"/admin/staff/{owner}")
        assert "ranks above you" in page.text and "/deactivate" not in page.text
        demote = await pc.post(f"/admin/staff/{owner}", {"full_name": "Owner", "role": "staff"})
        assert demote.status_code == 403 and "ranks above you" in text_of(demote)
        assert one(owner_engine, "SELECT role FROM users WHERE id = :i", i=owner).role == "super-admin"


# ---------------------------------------------------------------------------------------------
# API keys
# ---------------------------------------------------------------------------------------------
SECRET = re.compile(r"btms_[a-z0-9]{12}_[A-Za-z0-9_-]{20,}")


async def test_api_key_secret_shown_once_works_then_revoked(app, client, tenant, owner_engine):
    async with await signed_in(app, tenant.owner_email) as pc:
        page = await pc.get("/admin/api-keys")
        assert page.status_code == 200 and 'value="bookings.view"' in page.text
        assert "platform." not in page.text  # only what the API lets this organization grant

        empty = await pc.post("/admin/api-keys", {"name": "Nothing", "expires_on": ""})
        assert empty.status_code == 422 and "Choose at least one permission" in empty.text
        past = await pc.post("/admin/api-keys", {"name": "Old", "permissions": "bookings.view",
                                                 "expires_on": "2000-01-01"})
        assert past.status_code == 422 and 'id="e-expires_on"' in past.text
        unknown = await pc.post("/admin/api-keys", {"name": "Sneaky", "permissions": "platform.organizations.manage"})
        assert unknown.status_code == 422 and "Unknown permission" in unknown.text
        assert not all_rows(owner_engine, "SELECT 1 FROM api_keys WHERE organization_id = :o",
                            o=tenant.organization_id)

        form_key = re.search(r'name="form_key" value="([0-9a-f]{32})"', page.text).group(1)
        sent = {"name": "Website sync", "permissions": ["bookings.view", "venues.view"], "form_key": form_key}
        created = await pc.post("/admin/api-keys", sent)
        assert created.status_code == 201 and "shown only once" in created.text
        # Reloading that page sends the same form again: no second key, no secret.
        again = await pc.post("/admin/api-keys", sent)
        assert again.status_code == 303 and not SECRET.search(again.text)
        assert "already sent" in (await pc.get("/admin/api-keys")).text
        assert len(all_rows(owner_engine, "SELECT 1 FROM api_keys WHERE organization_id = :o",
                            o=tenant.organization_id)) == 1
        assert created.headers["cache-control"] == "no-store"
        assert_unique_ids(created.text)
        secret = SECRET.search(created.text).group(0)
        works = await client.get("/v1/bookings", headers=bearer(secret))
        assert works.status_code == 200, works.text

        listing = await pc.get("/admin/api-keys")
        prefix = secret.split("_")[1]
        assert "Website sync" in listing.text and prefix in listing.text
        assert secret not in listing.text and not SECRET.search(listing.text)

        key_id = one(owner_engine, "SELECT id FROM api_keys WHERE prefix = :p", p=prefix).id
        revoked = await follow(pc, await pc.post(f"/admin/api-keys/{key_id}/revoke"))
        assert "revoked" in revoked.text
    assert (await client.get("/v1/bookings", headers=bearer(secret))).status_code == 401


# ---------------------------------------------------------------------------------------------
# Promo codes
# ---------------------------------------------------------------------------------------------
async def test_promo_code_create_edit_deactivate_delete(app, client, tenant, owner_engine):
    activity = await make_activity(client, tenant)
    code = unique("SPRING").upper().replace("-", "")[:20]
    base = {"code": code, "description": "Spring sale", "discount_type": "percent", "discount_value": "150",
            "currency": "USD", "max_redemptions": "5", "valid_from": "", "valid_until": "", "is_active": "on"}

    def count():
        return len(all_rows(owner_engine, "SELECT 1 FROM promo_codes WHERE organization_id = :o",
                            o=tenant.organization_id))

    async with await signed_in(app, tenant.owner_email) as pc:
        too_much = await pc.post("/admin/promo-codes", base)
        assert too_much.status_code == 422 and "between 1 and 100" in too_much.text
        assert 'id="e-discount_value"' in too_much.text and f'value="{code}"' in too_much.text  # typed value kept
        assert_unique_ids(too_much.text)
        no_currency = await pc.post("/admin/promo-codes", {**base, "discount_type": "amount",
                                                           "discount_value": "10.00", "currency": ""})
        assert no_currency.status_code == 422 and 'id="e-currency"' in no_currency.text
        backwards = await pc.post("/admin/promo-codes", {**base, "discount_value": "10",
                                                         "valid_from": "2030-05-02T10:00",
                                                         "valid_until": "2030-05-01T10:00"})
        assert backwards.status_code == 422 and 'id="e-valid_until"' in backwards.text
        bad_code = await pc.post("/admin/promo-codes", {**base, "code": "no spaces!", "discount_value": "10"})
        assert bad_code.status_code == 422 and 'id="e-code"' in bad_code.text
        assert count() == 0

        created = await follow(pc, await pc.post("/admin/promo-codes", {
            **base, "discount_value": "10", "valid_from": "2030-05-01T09:00", "valid_until": "2030-06-01T18:00",
            "activity_ids": activity["id"]}))
        assert f"Promo code {code} created" in created.text and "10 %" in created.text and "0 / 5" in created.text
        row = one(owner_engine, "SELECT * FROM promo_codes WHERE organization_id = :o AND code = :c",
                  o=tenant.organization_id, c=code)
        assert (row.discount_type, row.discount_value, row.max_redemptions) == ("percent", 10, 5)
        # Typed in the organization's zone (the tenant's venue is in New York: EDT in May, UTC-4).
        assert row.valid_from == datetime(2030, 5, 1, 13, 0, tzinfo=timezone.utc)
        assert [str(a) for a in row.activity_ids] == [activity["id"]]

        duplicate = await pc.post("/admin/promo-codes", {**base, "discount_value": "10"})
        assert duplicate.status_code == 409 and "already exists" in duplicate.text and 'id="e-code"' in duplicate.text

        edit = await pc.get(f"/admin/promo-codes/{row.id}")
        assert edit.status_code == 200 and 'value="2030-05-01T09:00"' in edit.text
        saved = await follow(pc, await pc.post(f"/admin/promo-codes/{row.id}", {
            **base, "discount_type": "amount", "discount_value": "5.50", "currency": "usd", "max_redemptions": "",
            "valid_from": "", "valid_until": ""}))
        assert "5.50 USD" in saved.text
        row = one(owner_engine, "SELECT * FROM promo_codes WHERE id = :i", i=row.id)
        assert (row.discount_type, row.discount_value, row.currency.strip(), row.max_redemptions, row.valid_from) == (
            "amount", 550, "USD", None, None)
        wrong = await pc.post(f"/admin/promo-codes/{row.id}", {**base, "discount_value": "12.5"})
        assert wrong.status_code == 422 and "whole number" in wrong.text
        assert one(owner_engine, "SELECT discount_value FROM promo_codes WHERE id = :i", i=row.id).discount_value == 550

        off = await follow(pc, await pc.post(f"/admin/promo-codes/{row.id}/active"))
        assert "deactivated" in off.text
        assert one(owner_engine, "SELECT is_active FROM promo_codes WHERE id = :i", i=row.id).is_active is False
        deleted = await follow(pc, await pc.post(f"/admin/promo-codes/{row.id}/delete"))
        assert f"Promo code {code} deleted" in deleted.text
        assert count() == 0


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
def venue_form(**values) -> dict:
    form = {"name": "Main Hall", "timezone": "America/New_York", "address": "1 Main St", "city": "Springfield",
            "state": "IL", "zip": "62701", "country": "US", "status": "active", "open_mon": "09:00",
            "close_mon": "18:00"}
    return {**form, **values}


async def test_venue_settings_embed_tag_and_calendar_feed(app, client, tenant, owner_engine):
    async with await signed_in(app, tenant.owner_email) as pc:
        page = await pc.get("/admin/settings")
        assert page.status_code == 200
        tag = re.search(r'<textarea id="script-tag"[^>]*>([^<]+)</textarea>', page.text).group(1)
        assert unescape(tag).endswith(f'/widget.js" data-embed-key="{tenant.embed_key}" async></script>')
        assert unescape(tag).startswith('<script src="http')
        assert f'action="/admin/venues/{tenant.venue_id}/image"' in page.text  # the picture upload form
        assert_unique_ids(page.text)

        bad = await pc.post(f"/admin/settings/venues/{tenant.venue_id}", venue_form(timezone="Mars/Olympus",
                                                                                   open_tue="10:00"))
        assert bad.status_code == 422 and 'id="e-timezone"' in bad.text and 'id="e-open_tue"' in bad.text
        assert one(owner_engine, "SELECT timezone FROM venues WHERE id = :v",
                   v=tenant.venue_id).timezone == "America/New_York"

        saved = await follow(pc, await pc.post(f"/admin/settings/venues/{tenant.venue_id}",
                                               venue_form(timezone="Europe/Paris")))
        assert "Venue Main Hall saved" in saved.text
        assert '<option value="Europe/Paris" selected>' in saved.text
        venue = one(owner_engine, "SELECT * FROM venues WHERE id = :v", v=tenant.venue_id)
        assert (venue.timezone, venue.city, venue.operating_hours) == (
            "Europe/Paris", "Springfield", {"mon": {"open": "09:00", "close": "18:00"}})
        public = await client.get(f"/v1/public/venues/{tenant.embed_key}")
        assert public.json()["venue"]["timezone"] == "Europe/Paris"

        feed = await pc.post(f"/admin/settings/venues/{tenant.venue_id}/calendar-token")
        assert feed.status_code == 200 and "shown only once" in feed.text
        url = re.search(r'id="feed-url"[^>]*value="([^"]+)"', feed.text).group(1)
        path = unescape(url).split("://", 1)[1].split("/", 1)[1]
        assert (await client.get("/" + path)).status_code == 200
        again = await pc.get("/admin/settings")
        assert "A feed link exists" in again.text and path.split("token=")[1] not in again.text

        # A second venue: the page then offers a venue selector.
        added = await follow(pc, await pc.post("/admin/settings/venues", {"name": "Annex", "timezone": "Asia/Tokyo"}))
        assert "Venue Annex created" in added.text and 'name="venue"' in added.text
        assert_unique_ids(added.text)
        annex = one(owner_engine, "SELECT id, embed_key FROM venues WHERE organization_id = :o AND name = 'Annex'",
                    o=tenant.organization_id)
        shown = await pc.get(f"/admin/settings?venue={annex.id}")
        assert f'data-embed-key="{annex.embed_key}"' in unescape(shown.text)


async def test_cancellation_policy_saved_then_used_for_refunds(app, client, tenant, owner_engine):
    activity = await make_activity(client, tenant, full_refund_hours=24)
    async with await signed_in(app, tenant.owner_email) as pc:
        page = await pc.get("/admin/settings")
        assert activity["name"] in page.text and "Full refund up to 24 h before" in page.text
        bad = await pc.post(f"/admin/settings/venues/{tenant.venue_id}/cancellation-policy", {
            "full_refund_hours": "24", "partial_refund_hours": "48", "partial_refund_percent": "50",
            "activity_ids": activity["id"]})
        assert bad.status_code == 422 and 'id="e-partial_refund_hours"' in bad.text
        half = await pc.post(f"/admin/settings/venues/{tenant.venue_id}/cancellation-policy", {
            "full_refund_hours": "48", "partial_refund_hours": "24", "partial_refund_percent": "",
            "activity_ids": activity["id"]})
        assert half.status_code == 422 and 'id="e-partial_refund_percent"' in half.text
        assert one(owner_engine, "SELECT cancellation_policy FROM activities WHERE id = :a",
                   a=activity["id"]).cancellation_policy == {"full_refund_hours": 24}

        saved = await follow(pc, await pc.post(f"/admin/settings/venues/{tenant.venue_id}/cancellation-policy", {
            "full_refund_hours": "48", "partial_refund_hours": "24", "partial_refund_percent": "50",
            "activity_ids": activity["id"]}))
        assert "Cancellation policy saved for 1 activity" in saved.text
        assert "50 % up to 24 h before" in saved.text
    policy = {"full_refund_hours": 48, "partial_refund_hours": 24, "partial_refund_percent": 50}
    assert one(owner_engine, "SELECT cancellation_policy FROM activities WHERE id = :a",
               a=activity["id"]).cancellation_policy == policy

    session = await future_session(client, tenant, activity, days_ahead=4)
    booking = await book(client, tenant, session["id"])
    snapshot = one(owner_engine, "SELECT cancellation_policy FROM bookings WHERE id = :b",
                   b=booking["id"]).cancellation_policy
    assert snapshot == policy
    start = datetime.fromisoformat(session["start_time"])
    assert refund_percent(snapshot, start, "policy", start - timedelta(hours=50)) == 100
    assert refund_percent(snapshot, start, "policy", start - timedelta(hours=30)) == 50
    assert refund_percent(snapshot, start, "policy", start - timedelta(hours=10)) == 0


async def test_stripe_onboarding_button_redirects_to_stripe(app, tenant, owner_engine, stripe_api):
    async with await signed_in(app, tenant.owner_email) as pc:
        page = await pc.get("/admin/settings")
        assert "Not connected" in page.text and "Connect with Stripe" in page.text
        response = await pc.post("/admin/settings/stripe/onboarding")
        assert response.status_code == 303
        assert response.headers["location"] == "https://connect.stripe.com/setup/e/acct_x/abc"
        [link] = stripe_api.calls_to("/v1/account_links")
        assert stripe_form(link)["return_url"].endswith("/admin/settings?stripe=return")
        assert stripe_form(link)["refresh_url"].endswith("/admin/settings?stripe=refresh")
        assert one(owner_engine, "SELECT stripe_account_id FROM organizations WHERE id = :o",
                   o=tenant.organization_id).stripe_account_id.startswith("acct_")

        back = await pc.get("/admin/settings?stripe=return")
        assert "Back from Stripe" in back.text and "Onboarding incomplete" in back.text
        assert "Continue Stripe onboarding" in back.text
        expired = await pc.get("/admin/settings?stripe=refresh")
        assert "link expired" in expired.text
        not_ready = await pc.post("/admin/settings/payments", {"payment_provider": "stripe"})
        assert not_ready.status_code == 409 and 'id="e-payment_provider"' in not_ready.text


async def test_sms_reminders_and_mfa_roles_saved(app, tenant, owner_engine):
    async with await signed_in(app, tenant.owner_email) as pc:
        page = await pc.get("/admin/settings")
        assert 'name="sms_reminders" ' in page.text and 'name="sms_reminders" checked' not in page.text
        blank = await pc.post("/admin/settings/organization", {"name": "", "sms_reminders": "on"})
        assert blank.status_code == 422 and 'id="e-org-name"' in blank.text
        saved = await follow(pc, await pc.post("/admin/settings/organization", {
            "name": "Escape Co", "sms_reminders": "on", "require_mfa_for": ["org-admin", "admin"]}))
        assert "Organization settings saved" in saved.text and 'name="sms_reminders" checked' in saved.text
        settings = one(owner_engine, "SELECT name, settings FROM organizations WHERE id = :o", o=tenant.organization_id)
        assert settings.name == "Escape Co"
        assert settings.settings["sms_reminders"] is True
        assert settings.settings["require_mfa_for"] == ["org-admin", "admin"]
        await follow(pc, await pc.post("/admin/settings/organization", {"name": "Escape Co"}))
        settings = one(owner_engine, "SELECT settings FROM organizations WHERE id = :o", o=tenant.organization_id)
        assert settings.settings["sms_reminders"] is False and settings.settings["require_mfa_for"] == []


# ---------------------------------------------------------------------------------------------
# Permissions and CSRF
# ---------------------------------------------------------------------------------------------
async def test_roles_the_api_refuses_get_403_pages(app, client, tenant, owner_engine):
    staff, manager, admin = [await member_email(client, tenant, r) for r in ("staff", "manager", "admin")]
    async with await signed_in(app, staff) as pc:
        for url in ("/admin/staff", "/admin/staff/new", "/admin/api-keys", "/admin/promo-codes"):
            response = await pc.get(url)
            assert response.status_code == 403, url
            assert "lacks the permission" in response.text and "<html" in response.text
        settings = await pc.get("/admin/settings")  # venues.view: readable, nothing editable
        assert settings.status_code == 200 and tenant.embed_key in settings.text
        assert "Save venue" not in settings.text and "Connect with Stripe" not in settings.text
        for url, data in ((f"/admin/settings/venues/{tenant.venue_id}", venue_form(timezone="Asia/Tokyo")),
                          ("/admin/settings/organization", {"name": "Hijacked", "sms_reminders": "on"}),
                          ("/admin/settings/stripe/onboarding", {}),
                          ("/admin/api-keys", {"name": "x", "permissions": "bookings.view"})):
            assert (await pc.post(url, data)).status_code == 403, url
    async with await signed_in(app, manager) as pc:
        assert (await pc.get("/admin/staff")).status_code == 403
        assert (await pc.get("/admin/promo-codes")).status_code == 403
        assert (await pc.post("/admin/promo-codes", {"code": "X1", "discount_type": "percent",
                                                      "discount_value": "5"})).status_code == 403
    async with await signed_in(app, admin) as pc:
        listing = await pc.get("/admin/staff")  # users.view, but not users.manage
        assert listing.status_code == 200 and "/admin/staff/new" not in listing.text
        assert (await pc.post("/admin/staff", {"email": f"{unique('x')}@example.com", "full_name": "X",
                                               "role": "staff"})).status_code == 403
        assert (await pc.get("/admin/api-keys")).status_code == 403
        assert (await pc.get("/admin/promo-codes")).status_code == 200
    venue = one(owner_engine, "SELECT timezone FROM venues WHERE id = :v", v=tenant.venue_id)
    assert venue.timezone == "America/New_York"
    assert one(owner_engine, "SELECT name FROM organizations WHERE id = :o", o=tenant.organization_id).name != "Hijacked"
    assert not all_rows(owner_engine, "SELECT 1 FROM promo_codes WHERE organization_id = :o", o=tenant.organization_id)


async def test_forms_without_the_csrf_token_are_refused(app, tenant, owner_engine):
    email = f"{unique('csrf')}@example.com"
    async with await signed_in(app, tenant.owner_email) as pc:
        for url, data in (("/admin/staff", {"email": email, "full_name": "Forged", "role": "staff"}),
                          ("/admin/api-keys", {"name": "Forged", "permissions": "bookings.view"}),
                          ("/admin/settings/organization", {"name": "Forged"})):
            refused = await pc.http.post(url, data=data)
            assert refused.status_code == 403 and "reload the page" in text_of(refused), url
            wrong = await pc.http.post(url, data={**data, "csrf_token": "0" * 64})
            assert wrong.status_code == 403, url
    assert one(owner_engine, "SELECT id FROM users WHERE email = :e", e=email) is None
    assert not all_rows(owner_engine, "SELECT 1 FROM api_keys WHERE organization_id = :o", o=tenant.organization_id)
    assert one(owner_engine, "SELECT name FROM organizations WHERE id = :o", o=tenant.organization_id).name != "Forged"


async def test_unknown_ids_are_404_pages(app, tenant):
    async with await signed_in(app, tenant.owner_email) as pc:
        for url in (f"/admin/staff/{uuid.uuid4()}", f"/admin/promo-codes/{uuid.uuid4()}"):
            response = await pc.get(url)
            assert response.status_code == 404 and "<html" in response.text, url
        revoke = await pc.post(f"/admin/api-keys/{uuid.uuid4()}/revoke")
        assert revoke.status_code == 404
        for url in ("/admin/staff/not-an-id", "/admin/staff?cursor=garbage", "/admin/promo-codes?cursor=%00"):
            response = await pc.get(url)
            assert response.status_code == 422 and "<html" in response.text, url
