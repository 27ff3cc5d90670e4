"""Signing in to the pages: cookies, CSRF, the second factor, a forced password change, MFA
enrolment, renewal from the refresh cookie, signing out, and where each kind of user may go."""

from __future__ import annotations

import time

import httpx
import pyotp
from sqlalchemy import text

from tests.auth.conftest import enrol_totp, make_staff, sign_in
from tests.factories import PASSWORD
from tests.pages.helpers import PageClient, csrf_from

NEW_PASSWORD = "Brand-New-Pass-2026!"


def cookie_headers(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


async def test_pages_send_the_signed_out_to_sign_in_and_back(app, tenant):
    async with PageClient(app) as browser:
        response = await browser.get("/auth/home")
        assert response.status_code == 303 and response.headers["location"] == "/auth/login?next=/auth/home"
        page = await browser.get("/auth/login?next=/admin/bookings")
        assert page.status_code == 200 and 'value="/admin/bookings"' in page.text
        signed = await browser.post("/auth/login", {"email": tenant.owner_email, "password": PASSWORD,
                                                    "next": "/admin/bookings"})
        assert signed.headers["location"] == "/admin/bookings"
        cookies = cookie_headers(signed)
        for name in ("btms_access", "btms_refresh"):
            assert "HttpOnly" in cookies[name] and "SameSite=lax" in cookies[name], cookies[name]
            assert "Secure" not in cookies[name]  # plain http here; https below
        # The owner's home is the staff dashboard.
        assert (await browser.get("/auth/home")).headers["location"] == "/admin"


async def test_cookies_are_secure_over_https(app, tenant):
    async with PageClient(app, base_url="https://testserver") as browser:
        signed = await browser.sign_in(tenant.owner_email, PASSWORD)
        for name in ("btms_access", "btms_refresh", "btms_csrf"):
            header = cookie_headers(signed).get(name) or cookie_headers(await browser.get("/auth/login")).get(name)
            if header:
                assert "Secure" in header, header


async def test_wrong_password_says_so_and_sets_no_session(app, tenant):
    async with PageClient(app) as browser:
        response = await browser.post("/auth/login", {"email": tenant.owner_email, "password": "wrong-password-1"})
        assert response.status_code == 401
        assert "Wrong email or password." in response.text and tenant.owner_email in response.text
        assert "btms_access" not in response.headers.get("set-cookie", "")


async def test_forms_without_the_csrf_token_or_from_another_site_are_refused(app, tenant):
    async with PageClient(app) as browser:
        await browser.csrf()  # the browser has its CSRF cookie
        missing = await browser.http.post("/auth/login", data={"email": tenant.owner_email, "password": PASSWORD})
        assert missing.status_code == 403 and "form expired" in missing.text
        assert missing.headers["content-type"].startswith("text/html")
        forged = await browser.http.post("/auth/login", data={"email": tenant.owner_email, "password": PASSWORD,
                                                              "csrf_token": "0" * 64})
        assert forged.status_code == 403
        elsewhere = await browser.post("/auth/login", {"email": tenant.owner_email, "password": PASSWORD},
                                       headers={"Origin": "https://evil.example"})
        assert elsewhere.status_code == 403 and "another site" in elsewhere.text
        # Another browser's token does not fit this browser's cookie.
        async with PageClient(app) as other:
            stolen = await other.csrf()
        replayed = await browser.http.post("/auth/login", data={"email": tenant.owner_email, "password": PASSWORD,
                                                                "csrf_token": stolen})
        assert replayed.status_code == 403
        assert "btms_access" not in browser.http.cookies


async def test_next_never_leaves_the_site(app, tenant):
    async with PageClient(app) as browser:
        for hostile in ("//evil.example/x", "https://evil.example", "/\\evil.example", "/\t/evil.example",
                        "/\n/evil.example"):
            signed = await browser.post("/auth/login", {"email": tenant.owner_email, "password": PASSWORD,
                                                        "next": hostile})
            assert signed.headers["location"] == "/auth/home", hostile


async def test_two_step_sign_in_never_carries_the_password_forward(app, tenant, client):
    staff = await make_staff(tenant, "admin")
    async with PageClient(app) as browser:
        await browser.sign_in(staff.email, PASSWORD)
        started = await browser.post("/auth/mfa/setup", {})
        assert started.status_code == 200 and "<svg" in started.text  # the QR code, drawn here
        secret = started.text.split('name="secret" value="')[1].split('"')[0]
        wrong = await browser.post("/auth/mfa/confirm", {"otp": "000000" if pyotp.TOTP(secret).now() != "000000"
                                                         else "111111", "secret": secret})
        assert wrong.status_code == 422 and "does not match" in wrong.text
        confirmed = await browser.post("/auth/mfa/confirm", {"otp": pyotp.TOTP(secret).now(), "secret": secret})
        assert confirmed.status_code == 200 and confirmed.text.count("<li><code>") == 10  # recovery codes
    async with PageClient(app) as browser:
        first = await browser.post("/auth/login", {"email": staff.email, "password": PASSWORD, "next": "/admin"})
        assert first.headers["location"] == "/auth/mfa?next=/admin"
        assert "btms_access" not in browser.http.cookies
        page = await browser.get("/auth/mfa?next=/admin")
        assert PASSWORD not in page.text and 'name="otp"' in page.text
        bad = await browser.post("/auth/mfa", {"otp": "12345678", "next": "/admin"})
        assert bad.status_code == 401 and "wrong or was already used" in bad.text
        # The code used at enrolment cannot be replayed; wait for the authenticator's next one if needed.
        totp = pyotp.TOTP(secret)
        code = totp.now()
        good = await browser.post("/auth/mfa", {"otp": code, "next": "/admin"})
        if good.status_code == 401:  # the enrolment code is still the current one: use the next window's
            good = await browser.post("/auth/mfa", {"otp": totp.at(time.time() + 30), "next": "/admin"})
        assert good.status_code == 303 and good.headers["location"] == "/admin"
        assert "btms_access" in browser.http.cookies


async def test_a_temporary_password_must_be_replaced_before_anything_else(app, tenant, owner_engine):
    staff = await make_staff(tenant, "manager", must_change_password=True)
    async with PageClient(app) as browser:
        signed = await browser.post("/auth/login", {"email": staff.email, "password": PASSWORD, "next": "/admin"})
        assert signed.headers["location"] == "/auth/password?next=/admin"
        # Every other page sends them back to the password form.
        blocked = await browser.get("/auth/home")
        assert blocked.status_code == 303 and blocked.headers["location"].startswith("/auth/password")
        form = await browser.get("/auth/password?next=/admin")
        assert "Choose your own password" in form.text and "Temporary password" in form.text
        differ = await browser.post("/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                       "confirm_password": NEW_PASSWORD + "x", "next": "/admin"})
        assert differ.status_code == 422 and "The two new passwords differ." in differ.text
        weak = await browser.post("/auth/password", {"current_password": PASSWORD, "new_password": "short",
                                                     "confirm_password": "short", "next": "/admin"})
        assert weak.status_code == 422 and 'id="e-new_password"' in weak.text
        done = await browser.post("/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                     "confirm_password": NEW_PASSWORD, "next": "/admin"})
        assert done.status_code == 303 and done.headers["location"] == "/admin"
        assert (await browser.get("/auth/home")).headers["location"] == "/admin"
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT must_change_password FROM users WHERE email = :e"),
                            {"e": staff.email}).scalar_one() is False


async def test_an_expired_access_cookie_is_renewed_from_the_refresh_cookie(app, tenant):
    async with PageClient(app) as browser:
        await browser.sign_in(tenant.owner_email, PASSWORD)
        refresh = browser.http.cookies["btms_refresh"]
        browser.http.cookies.set("btms_access", "not-a-token", domain="testserver.local")
        renewed = await browser.get("/auth/home")
        assert renewed.status_code == 303 and renewed.headers["location"] == "/admin"
        assert browser.http.cookies["btms_refresh"] != refresh  # rotated, as the API rotates
        # The old refresh token is spent: presented again, it ends that whole sign-in.
        async with PageClient(app) as thief:
            thief.http.cookies.set("btms_refresh", refresh, domain="testserver.local")
            assert (await thief.get("/auth/home")).headers["location"].startswith("/auth/login")


async def test_signing_out_ends_the_session_for_good(app, tenant):
    async with PageClient(app) as browser:
        await browser.sign_in(tenant.owner_email, PASSWORD)
        access = browser.http.cookies["btms_access"]
        out = await browser.post("/auth/logout", {})
        assert out.status_code == 303 and out.headers["location"] == "/auth/login"
        assert "btms_access" not in browser.http.cookies
        page = await browser.get("/auth/login")
        assert "Signed out." in page.text
    async with PageClient(app) as replay:  # the copied cookie no longer works either
        replay.http.cookies.set("btms_access", access, domain="testserver.local")
        assert (await replay.get("/auth/home")).headers["location"].startswith("/auth/login")


async def test_the_platform_team_is_sent_to_the_platform_console(app, platform_admin):
    async with PageClient(app) as browser:
        await browser.sign_in(platform_admin.email, PASSWORD)
        assert (await browser.get("/auth/home")).headers["location"] == "/platform"
        # Already signed in: the sign-in page sends them on.
        assert (await browser.get("/auth/login")).headers["location"] == "/platform"


async def test_requests_together_after_an_idle_hour_share_one_renewal(app, tenant):
    """Two tabs (or live streams reconnecting) with the same lapsed cookies: both go on, and the
    sign-in survives; a form sent after the idle hour goes through too."""
    import asyncio

    async with PageClient(app) as browser:
        await browser.sign_in(tenant.owner_email, PASSWORD)
        browser.http.cookies.set("btms_access", "lapsed", domain="testserver.local")
        cookies = dict(browser.http.cookies)
        answers = await asyncio.gather(*(browser.http.get("/auth/home", cookies=cookies) for _ in range(3)))
        assert [a.headers["location"] for a in answers] == ["/admin"] * 3
        assert len({a.cookies.get("btms_refresh") for a in answers}) == 1  # one rotation, shared
        browser.http.cookies.set("btms_access", "lapsed again", domain="testserver.local")
        browser.http.cookies.set("btms_refresh", answers[0].cookies["btms_refresh"], domain="testserver.local")
        form = await browser.post("/auth/mfa/setup", {})
        assert form.status_code == 200 and "<svg" in form.text  # not a sign-in redirect


async def test_signing_out_after_an_idle_hour_still_ends_the_sign_in(app, tenant):
    async with PageClient(app) as browser:
        await browser.sign_in(tenant.owner_email, PASSWORD)
        refresh = browser.http.cookies["btms_refresh"]
        browser.http.cookies.set("btms_access", "lapsed", domain="testserver.local")
        assert (await browser.post("/auth/logout", {})).headers["location"] == "/auth/login"
    async with PageClient(app) as later:
        later.http.cookies.set("btms_refresh", refresh, domain="testserver.local")
        assert (await later.get("/auth/home")).headers["location"].startswith("/auth/login")


async def test_behind_a_tls_proxy_cookies_are_secure_and_its_origin_is_ours(app, tenant, settings, monkeypatch):
    """The proxy speaks https to the browser and http to the app: BOOKINGTMS_BASE_URL says which."""
    monkeypatch.setattr(settings, "base_url", "https://bookings.example.com")
    async with PageClient(app) as browser:
        page = await browser.get("/auth/login")
        assert "Secure" in cookie_headers(page)["btms_csrf"]
        token = csrf_from(page.text)
        cookie = {"Cookie": f"btms_csrf={page.cookies['btms_csrf']}"}  # what the browser sends over https
        form = {"email": tenant.owner_email, "password": PASSWORD, "csrf_token": token}
        foreign = await browser.http.post("/auth/login", data=form,
                                          headers={**cookie, "Origin": "https://evil.example"})
        assert foreign.status_code == 403
        signed = await browser.http.post("/auth/login", data=form,
                                         headers={**cookie, "Origin": "https://bookings.example.com"})
        assert signed.status_code == 303
        assert "Secure" in cookie_headers(signed)["btms_access"]


async def test_dates_out_of_range_are_a_message_not_an_error(app, tenant, platform_admin):
    async with PageClient(app) as browser:
        await browser.sign_in(tenant.owner_email, PASSWORD)
        for url in ("/admin?date=9999-12-31", "/admin?date=0001-01-01"):
            page = await browser.get(url)
            assert page.status_code in (200, 422) and "between the years 2000 and 2100" in page.text, url
        assert (await browser.get("/admin/bookings/new?date=9999-12-31")).status_code in (200, 422)
    async with PageClient(app) as browser:
        await browser.sign_in(platform_admin.email, PASSWORD)
        page = await browser.get("/platform/audit-log?end=9999-12-31")
        assert page.status_code == 422 and "2100" in page.text


async def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(app, tenant, settings, monkeypatch):
    """A TLS proxy that says X-Forwarded-Proto: https gets Secure cookies, the second factor's
    ticket included; the same header from any other peer changes nothing."""
    staff = await make_staff(tenant, "admin")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as api:
        await enrol_totp(api, (await sign_in(api, staff.email))["access_token"])
    https = {"X-Forwarded-Proto": "https"}
    for trusted, secure in (("", False), ("127.0.0.1", True)):
        monkeypatch.setattr(settings, "trusted_proxies", trusted)
        async with PageClient(app) as browser:  # the in-process peer is 127.0.0.1
            page = await browser.get("/auth/login", headers=https)
            assert ("Secure" in cookie_headers(page)["btms_csrf"]) is secure
            ticket = await browser.post("/auth/login", {"email": staff.email, "password": staff.password},
                                        headers=https)
            assert ticket.status_code == 303 and ticket.headers["location"].startswith("/auth/mfa")
            assert ("Secure" in cookie_headers(ticket)["btms_mfa"]) is secure, cookie_headers(ticket)
