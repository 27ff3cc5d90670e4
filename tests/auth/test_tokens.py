"""Sessions and tokens: refresh rotation with reuse detection, logout, password change and reset
ending every earlier token at once, tampered and stale tokens, the password policy, and
temporary passwords that must be changed at first sign-in."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from sqlalchemy import text

from tests.auth.conftest import make_staff, problem, sign_in
from tests.factories import PASSWORD, bearer, unique

NEW_PASSWORD = "Another-Strong-Pass-42"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _parts(token: str) -> tuple[str, dict, str]:
    header, payload, signature = token.split(".")
    return header, json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))), signature


async def _works(api, access_token: str) -> bool:
    response = await api.get("/v1/venues", headers=bearer(access_token))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def test_refresh_rotates_and_a_reused_token_ends_the_whole_chain(api, tenant):
    staff = await make_staff(tenant)
    first = await sign_in(api, staff.email)

    second = (await api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}))
    assert second.status_code == 200, second.text
    second = second.json()
    assert second["access_token"] != first["access_token"] and second["refresh_token"] != first["refresh_token"]
    assert second["token_type"] == "bearer" and second["expires_in"] == 3600
    third = (await api.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})).json()
    assert len({first["refresh_token"], second["refresh_token"], third["refresh_token"]}) == 3
    assert await _works(api, third["access_token"])

    # The first token again: someone replayed it. The chain ends for both holders.
    reused = await api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    problem(reused, 401, "refresh_token_reused")
    problem(await api.post("/v1/auth/refresh", json={"refresh_token": third["refresh_token"]}),
            401, "invalid_refresh_token")
    # ...including the access tokens that chain handed out.
    problem(await api.get("/v1/venues", headers=bearer(third["access_token"])), 401, "token_revoked")

    # Another sign-in of the same user is a separate chain and is untouched.
    other = await sign_in(api, staff.email)
    assert (await api.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})).status_code == 200
    problem(await api.post("/v1/auth/refresh", json={"refresh_token": "x" * 43}), 401, "invalid_refresh_token")


async def test_refresh_tokens_are_stored_hashed(api, tenant, owner_engine):
    staff = await make_staff(tenant)
    pair = await sign_in(api, staff.email)
    with owner_engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM refresh_tokens WHERE user_id = :u"),
                              {"u": staff.id}).scalars().all()
    assert len(stored) == 1 and stored[0] != pair["refresh_token"] and pair["refresh_token"] not in stored[0]


async def test_logout_ends_the_access_token_at_once_and_its_refresh_chain(api, tenant):
    staff = await make_staff(tenant)
    pair = await sign_in(api, staff.email)
    rotated = (await api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).json()
    elsewhere = await sign_in(api, staff.email)  # the same person on another device

    assert (await api.post("/v1/auth/logout", headers=bearer(rotated["access_token"]))).status_code == 204
    problem(await api.get("/v1/venues", headers=bearer(rotated["access_token"])), 401, "token_revoked")
    problem(await api.get("/v1/me", headers=bearer(rotated["access_token"])), 401, "token_revoked")
    # The chain's refresh token is dead too, though logout was sent without it...
    problem(await api.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}),
            401, "invalid_refresh_token")
    # ...and so is the chain's earlier access token.
    problem(await api.get("/v1/venues", headers=bearer(pair["access_token"])), 401, "token_revoked")
    # The other device's sign-in goes on.
    assert await _works(api, elsewhere["access_token"])
    assert (await api.post("/v1/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]})).status_code == 200


async def test_password_change_ends_every_earlier_token_of_the_user(api, tenant, owner_engine):
    staff = await make_staff(tenant)
    a = await sign_in(api, staff.email)
    b = await sign_in(api, staff.email)
    colleague = await make_staff(tenant)
    c = await sign_in(api, colleague.email)

    changed = await api.post("/v1/auth/password", headers=bearer(a["access_token"]),
                             json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert changed.status_code == 204, changed.text
    for pair in (a, b):
        problem(await api.get("/v1/venues", headers=bearer(pair["access_token"])), 401, "token_revoked")
        problem(await api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
                401, "invalid_refresh_token")
    assert await _works(api, c["access_token"])  # nobody else is signed out
    problem(await api.post("/v1/auth/login", json={"email": staff.email, "password": PASSWORD}),
            401, "invalid_credentials")
    fresh = await sign_in(api, staff.email, NEW_PASSWORD)
    assert await _works(api, fresh["access_token"])
    assert "auth.password_changed" in [a for a, _ in _actions(owner_engine, staff.id)]


def _actions(owner_engine, user_id):
    with owner_engine.connect() as conn:
        return conn.execute(text("SELECT action, changes FROM audit_log WHERE target_id = :t ORDER BY id"),
                            {"t": user_id}).all()


async def test_password_change_needs_the_current_password(api, tenant):
    staff = await make_staff(tenant)
    pair = await sign_in(api, staff.email)
    body = problem(await api.post("/v1/auth/password", headers=bearer(pair["access_token"]),
                                  json={"current_password": "Not-The-Password-1", "new_password": NEW_PASSWORD}),
                   422, "invalid_credentials")
    assert body["field"] == "current_password"
    assert await _works(api, pair["access_token"])


def _reset_link(owner_engine, email: str) -> str:
    with owner_engine.connect() as conn:
        payload = conn.execute(text("SELECT payload FROM notification_outbox WHERE kind = 'password_reset' "
                                    "AND recipient = :e ORDER BY created_at DESC LIMIT 1"), {"e": email}).scalar_one()
    return payload["reset_url"]


async def test_password_reset_ends_every_earlier_token_and_the_link_works_once(api, tenant, owner_engine):
    staff = await make_staff(tenant)
    a = await sign_in(api, staff.email)
    b = await sign_in(api, staff.email)

    asked = await api.post("/v1/auth/password-reset", json={"email": staff.email.upper()})
    assert asked.status_code == 202
    unknown = await api.post("/v1/auth/password-reset", json={"email": f"{unique('nobody')}@example.com"})
    assert unknown.status_code == 202 and unknown.json() == asked.json()  # no account enumeration
    token = parse_qs(urlparse(_reset_link(owner_engine, staff.email)).query)["token"][0]

    weak = await api.post("/v1/auth/password-reset/confirm", json={"token": token, "new_password": "password"})
    assert problem(weak, 422, "weak_password")["field"] == "new_password"
    done = await api.post("/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD})
    assert done.status_code == 204, done.text
    for pair in (a, b):
        problem(await api.get("/v1/venues", headers=bearer(pair["access_token"])), 401, "token_revoked")
        problem(await api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
                401, "invalid_refresh_token")
    again = await api.post("/v1/auth/password-reset/confirm", json={"token": token, "new_password": "Yet-Another-Pass-43"})
    assert problem(again, 422, "invalid_reset_token")["field"] == "token"
    fresh = await sign_in(api, staff.email, NEW_PASSWORD)
    assert await _works(api, fresh["access_token"])


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the HS512 forgery
async def test_forged_expired_and_stale_tokens_are_refused(api, tenant, settings):
    staff = await make_staff(tenant, "staff")
    pair = await sign_in(api, staff.email)
    token = pair["access_token"]
    header, claims, signature = _parts(token)
    secret = settings.resolved_secret_key()
    now = int(time.time())
    forged = {
        "alg none": ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(claims), ""]),
        "alg none, no dot": ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(claims)]),
        "wrong key": jwt.encode(claims, "another-secret-key-of-enough-length-0123456789", algorithm="HS256"),
        "role raised, re-encoded without the key": ".".join([header, _b64({**claims, "role": "super-admin"}), signature]),
        "org changed, re-encoded without the key": ".".join(
            [header, _b64({**claims, "org_id": "00000000-0000-0000-0000-000000000001"}), signature]),
        "version number raised": ".".join([header, _b64({k: v for k, v in claims.items() if k != "restrict"}
                                                     | {"ver": claims["ver"] + 1}), signature]),
        "expired": jwt.encode({**claims, "iat": now - 7200, "exp": now - 10}, secret, algorithm="HS256"),
        "HS512 instead of HS256": jwt.encode(claims, secret, algorithm="HS512"),
    }
    for label, bad in forged.items():
        response = await api.get("/v1/venues", headers=bearer(bad))
        assert response.status_code == 401, f"{label}: {response.status_code} {response.text}"
    assert await _works(api, token)

    # Issued before a password change: refused, although signed with the right key.
    changed = await api.post("/v1/auth/password", headers=bearer(token),
                             json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert changed.status_code == 204
    problem(await api.get("/v1/venues", headers=bearer(token)), 401, "token_revoked")
    re_signed = jwt.encode({**claims, "iat": now, "exp": now + 600}, secret, algorithm="HS256")  # old version number
    problem(await api.get("/v1/venues", headers=bearer(re_signed)), 401, "token_revoked")


async def test_weak_passwords_are_refused_naming_the_field(api, tenant, platform_admin):
    staff = await make_staff(tenant)
    pair = await sign_in(api, staff.email)
    for weak, missing in [("Short-1a", "12 characters"), ("alllowercase-123", "upper- and lower-case"),
                          ("No-Digits-Here-At-All", "a digit"), ("NoSymbols1234567", "a symbol")]:
        body = problem(await api.post("/v1/auth/password", headers=bearer(pair["access_token"]),
                                      json={"current_password": PASSWORD, "new_password": weak}), 422, "weak_password")
        assert body["field"] == "new_password" and missing in body["detail"], body
    assert await _works(api, pair["access_token"])  # nothing changed

    slug = unique("weak")
    created = await api.post("/v1/platform/organizations", headers=platform_admin.headers, json={
        "name": "Weak", "slug": slug, "owner": {"email": f"owner@{slug}.example.com", "full_name": "O",
                                                "password": "password123"}})
    assert problem(created, 422, "weak_password")["field"] == "owner.password"


async def test_a_temporary_password_must_be_changed_at_first_sign_in(api, platform_admin, owner_engine):
    slug = unique("temp")
    email = f"owner@{slug}.example.com"
    created = await api.post("/v1/platform/organizations", headers=platform_admin.headers, json={
        "name": "Temp", "slug": slug, "owner": {"email": email, "full_name": "Temp Owner"}})
    assert created.status_code == 201, created.text
    with owner_engine.connect() as conn:
        payload = conn.execute(text("SELECT payload FROM notification_outbox WHERE kind = 'welcome' "
                                    "AND recipient = :e"), {"e": email}).scalar_one()
    temporary = payload["temporary_password"]
    assert temporary

    pair = await sign_in(api, email, temporary)
    assert pair["must_change_password"] is True
    me = await api.get("/v1/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200 and me.json()["must_change_password"] is True
    for method, path in [("GET", "/v1/venues"), ("GET", "/v1/bookings"), ("POST", "/v1/auth/mfa/totp"),
                         ("GET", "/v1/organization/settings")]:
        problem(await api.request(method, path, headers=bearer(pair["access_token"])), 403, "password_change_required")
    # Refreshing does not shed the restriction.
    refreshed = (await api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).json()
    problem(await api.get("/v1/venues", headers=bearer(refreshed["access_token"])), 403, "password_change_required")

    changed = await api.post("/v1/auth/password", headers=bearer(refreshed["access_token"]),
                             json={"current_password": temporary, "new_password": NEW_PASSWORD})
    assert changed.status_code == 204, changed.text
    problem(await api.get("/v1/me", headers=bearer(refreshed["access_token"])), 401, "token_revoked")
    full = await sign_in(api, email, NEW_PASSWORD)
    assert full["must_change_password"] is False
    assert await _works(api, full["access_token"])
