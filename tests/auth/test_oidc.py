"""Sign in with Google (OpenID Connect), driven end to end against a real provider on loopback:
our redirect, the provider's authorization and redirect back, our callback exchanging the code
and verifying the id_token, linking to existing staff by verified email only."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import httpx
from joserfc.jwk import RSAKey
from sqlalchemy import text

from tests.auth.conftest import (CALLBACK, CLIENT_ID, audit_actions, enrol_totp, make_staff, problem, sign_in,
                                 unused_code, valid_codes)
from tests.factories import bearer, unique


async def _to_provider(api: httpx.AsyncClient, provider) -> str:
    """GET /v1/auth/oidc/login: the 302 to the provider's authorization endpoint."""
    response = await api.get("/v1/auth/oidc/login")
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(f"{provider.issuer}/authorize?")
    return location


async def _provider_redirect(location: str) -> str:
    """The browser at the provider: signs in and is sent back to our callback."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(location)
    assert response.status_code == 302, response.text
    back = response.headers["location"]
    assert back.startswith(CALLBACK + "?")
    return back


async def _sign_in_with_provider(api, provider, **identity) -> httpx.Response:
    provider.identity = identity
    back = await _provider_redirect(await _to_provider(api, provider))
    return await api.get(back.removeprefix("http://testserver"))


def _identity(email: str, **extra) -> dict:
    return {"sub": unique("google-sub"), "email": email, "email_verified": True, "name": "Staff Member", **extra}


async def test_the_redirect_carries_state_nonce_and_pkce(api, oidc):
    location = await _to_provider(api, oidc)
    query = parse_qs(urlparse(location).query)
    assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [CALLBACK] and "openid" in query["scope"][0].split()
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    again = parse_qs(urlparse(await _to_provider(api, oidc)).query)
    assert again["state"] != query["state"] and again["nonce"] != query["nonce"]
    assert again["code_challenge"] != query["code_challenge"]


async def test_an_existing_staff_member_signs_in_and_is_linked_by_subject(api, oidc, tenant, owner_engine):
    staff = await make_staff(tenant, "manager")
    identity = _identity(staff.email.upper())  # the provider may write the address in another case
    response = await _sign_in_with_provider(api, oidc, **identity)
    assert response.status_code == 200, response.text
    pair = response.json()
    assert set(pair) >= {"access_token", "refresh_token", "token_type", "expires_in"} and pair["token_type"] == "bearer"
    me = (await api.get("/v1/me", headers=bearer(pair["access_token"]))).json()
    assert me["id"] == staff.id and me["role"] == "manager"
    assert (await api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).status_code == 200

    # The code went to the token endpoint with the PKCE verifier and our redirect URI.
    sent = oidc.token_requests[-1]
    assert sent["grant_type"] == "authorization_code" and sent["redirect_uri"] == CALLBACK and sent["code_verifier"]

    with owner_engine.connect() as conn:
        subject = conn.execute(text("SELECT oidc_subject FROM users WHERE id = :u"), {"u": staff.id}).scalar_one()
    assert subject == identity["sub"]
    audited = audit_actions(owner_engine, staff.id)
    assert ("auth.sso_linked" in [a for a, _ in audited])
    assert [c for a, c in audited if a == "auth.login"][-1]["method"] == "oidc"

    # From now on the subject is what counts: a changed address at the provider still signs in...
    again = await _sign_in_with_provider(api, oidc, **{**identity, "email": f"renamed-{unique('x')}@example.com"})
    assert again.status_code == 200, again.text
    me = (await api.get("/v1/me", headers=bearer(again.json()["access_token"]))).json()
    assert me["id"] == staff.id
    # ...and another provider account claiming the same address does not.
    other = await _sign_in_with_provider(api, oidc, **_identity(staff.email))
    problem(other, 401, "sso_not_linked")


async def test_unknown_or_unverified_addresses_are_not_linked_and_nobody_is_created(api, oidc, tenant, owner_engine,
                                                                                  platform_admin):
    staff = await make_staff(tenant)
    stranger = f"{unique('stranger')}@example.com"
    problem(await _sign_in_with_provider(api, oidc, **_identity(stranger)), 401, "sso_not_linked")
    problem(await _sign_in_with_provider(api, oidc, **_identity(staff.email, email_verified=False)),
            401, "sso_not_linked")
    problem(await _sign_in_with_provider(api, oidc, **_identity(staff.email, email_verified=None)),
            401, "sso_not_linked")
    # The platform team signs in with a password only.
    problem(await _sign_in_with_provider(api, oidc, **_identity(platform_admin.email)), 401, "sso_not_linked")
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE email = :e"), {"e": stranger}).scalar_one() == 0
        assert conn.execute(text("SELECT oidc_subject FROM users WHERE id = :u"),
                            {"u": staff.id}).scalar_one() is None
    # A deactivated account is not signed in either.
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE users SET is_active = false WHERE id = :u"), {"u": staff.id})
    problem(await _sign_in_with_provider(api, oidc, **_identity(staff.email)), 401, "sso_not_linked")


async def test_a_bad_replayed_or_carried_over_state_is_refused(api, client_from, oidc, tenant):
    staff = await make_staff(tenant)
    oidc.identity = _identity(staff.email)
    back = await _provider_redirect(await _to_provider(api, oidc))
    code = parse_qs(urlparse(back).query)["code"][0]
    problem(await api.get("/v1/auth/oidc/callback", params={"code": code, "state": "made-up-state"}),
            400, "invalid_state")
    problem(await api.get("/v1/auth/oidc/callback", params={"code": code}), 400, "invalid_state")
    assert (await api.get(back.removeprefix("http://testserver"))).status_code == 200
    problem(await api.get(back.removeprefix("http://testserver")), 400, "invalid_state")  # single use
    # A callback URL carried to another browser (login CSRF) is refused: the attempt is bound to
    # the browser that began it.
    back = await _provider_redirect(await _to_provider(api, oidc))
    problem(await client_from().get(back.removeprefix("http://testserver")), 400, "invalid_state")
    # The provider reporting an error (the person pressed "cancel").
    location = await _to_provider(api, oidc)
    state = parse_qs(urlparse(location).query)["state"][0]
    problem(await api.get("/v1/auth/oidc/callback", params={"error": "access_denied", "state": state}),
            401, "sso_failed")


async def test_id_tokens_that_do_not_verify_are_refused(api, oidc, tenant, owner_engine):
    staff = await make_staff(tenant)
    now = int(time.time())
    impostor_same_kid = RSAKey.generate_key(2048, parameters={"kid": "provider-key-1"}, private=True)
    impostor_new_kid = RSAKey.generate_key(2048, parameters={"kid": "someone-else"}, private=True)
    cases = {
        "wrong nonce": ({"nonce": "not-the-nonce-we-sent"}, None),
        "another audience": ({"aud": "some-other-client"}, None),
        "another issuer": ({"iss": "https://accounts.example.net"}, None),
        "expired": ({"iat": now - 3600, "exp": now - 600}, None),
        "no subject": ({"sub": None}, None),
        "signed by another key (same key id)": ({}, impostor_same_kid),
        "signed by another key (unknown key id)": ({}, impostor_new_kid),
    }
    for label, (overrides, key) in cases.items():
        oidc.claim_overrides, oidc.signing_key = overrides, key
        response = await _sign_in_with_provider(api, oidc, **_identity(staff.email))
        assert response.status_code == 401, f"{label}: {response.status_code} {response.text}"
        assert response.json()["code"] == "invalid_id_token", f"{label}: {response.text}"
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT oidc_subject FROM users WHERE id = :u"), {"u": staff.id}).scalar_one() is None
    oidc.claim_overrides, oidc.signing_key = {}, None
    assert (await _sign_in_with_provider(api, oidc, **_identity(staff.email))).status_code == 200


async def test_mfa_and_a_temporary_password_still_apply(api, oidc, tenant):
    staff = await make_staff(tenant)
    used: set[str] = set()
    totp, _ = await enrol_totp(api, (await sign_in(api, staff.email))["access_token"], used)
    identity = _identity(staff.email)
    challenged = await _sign_in_with_provider(api, oidc, **identity)
    body = problem(challenged, 401, "mfa_required")
    ticket = body["mfa_token"]
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in valid_codes(totp))
    problem(await api.post("/v1/auth/mfa/verify", json={"mfa_token": ticket, "otp": wrong}), 401, "invalid_otp")
    done = await api.post("/v1/auth/mfa/verify", json={"mfa_token": ticket, "otp": unused_code(totp, used)})
    assert done.status_code == 200, done.text
    assert (await api.get("/v1/venues", headers=bearer(done.json()["access_token"]))).status_code == 200
    problem(await api.post("/v1/auth/mfa/verify", json={"mfa_token": ticket, "otp": unused_code(totp, used)}),
            401, "invalid_mfa_token")  # the ticket is used up

    newcomer = await make_staff(tenant, must_change_password=True)
    signed = await _sign_in_with_provider(api, oidc, **_identity(newcomer.email))
    assert signed.status_code == 200, signed.text
    assert signed.json()["must_change_password"] is True
    problem(await api.get("/v1/venues", headers=bearer(signed.json()["access_token"])), 403,
            "password_change_required")


async def test_without_configuration_single_sign_on_is_off(api, settings, monkeypatch):
    monkeypatch.setattr(settings, "oidc_client_id", None)
    problem(await api.get("/v1/auth/oidc/login"), 404, "sso_disabled")
    problem(await api.get("/v1/auth/oidc/callback", params={"code": "c", "state": "s"}), 404, "sso_disabled")


def test_the_settings_come_from_the_environment(monkeypatch):
    from bookingtms.config import Settings

    monkeypatch.setenv("BOOKINGTMS_BASE_URL", "https://book.example.com")
    monkeypatch.setenv("OIDC_CLIENT_ID", "id-1")
    monkeypatch.setenv("OIDC_CLIENT_SECRET", "secret-1")
    settings = Settings()
    assert settings.oidc_enabled and settings.oidc_issuer == "https://accounts.google.com"
    assert settings.resolved_oidc_redirect_uri() == "https://book.example.com/v1/auth/oidc/callback"
    monkeypatch.setenv("OIDC_REDIRECT_URI", "https://book.example.com/sso")
    assert Settings().resolved_oidc_redirect_uri() == "https://book.example.com/sso"
    monkeypatch.delenv("OIDC_CLIENT_SECRET")
    assert not Settings().oidc_enabled
