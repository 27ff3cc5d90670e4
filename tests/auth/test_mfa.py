"""Two-step verification: TOTP enrolment and confirmation, sign-in with a code or a recovery code,
replays, turning it off, and an organization requiring it for its admin roles."""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import text

from tests.auth.conftest import audit_actions, enrol_totp, make_staff, problem, sign_in, unused_code, valid_codes
from tests.factories import bearer


async def test_enrolment_confirmation_and_sign_in_with_a_code(api, tenant, owner_engine):
    staff = await make_staff(tenant, "admin")
    pair = await sign_in(api, staff.email)

    started = await api.post("/v1/auth/mfa/totp", headers=bearer(pair["access_token"]))
    assert started.status_code == 201, started.text
    secret, uri = started.json()["secret"], started.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri and "issuer=BookingTMS" in uri
    assert staff.email.replace("@", "%40") in uri
    # Not in force until confirmed: sign-in still needs no code.
    await sign_in(api, staff.email)
    me = (await api.get("/v1/me", headers=bearer(pair["access_token"]))).json()
    assert me["mfa_enabled"] is False

    totp = pyotp.TOTP(secret)
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in valid_codes(totp))
    body = problem(await api.post("/v1/auth/mfa/totp/confirm", headers=bearer(pair["access_token"]),
                                  json={"otp": wrong}), 422, "invalid_otp")
    assert body["field"] == "otp"
    used = set()
    confirmed = await api.post("/v1/auth/mfa/totp/confirm", headers=bearer(pair["access_token"]),
                               json={"otp": unused_code(totp, used)})
    assert confirmed.status_code == 200, confirmed.text
    result = confirmed.json()
    codes = result["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    # Sessions begun with the password alone end; the confirming caller gets a fresh pair.
    problem(await api.get("/v1/venues", headers=bearer(pair["access_token"])), 401, "token_revoked")
    assert (await api.get("/v1/venues", headers=bearer(result["access_token"]))).status_code == 200
    assert (await api.get("/v1/me", headers=bearer(result["access_token"]))).json()["mfa_enabled"] is True
    problem(await api.post("/v1/auth/mfa/totp", headers=bearer(result["access_token"])), 409, "mfa_already_enabled")

    # Stored: the secret sealed, the recovery codes hashed.
    with owner_engine.connect() as conn:
        row = conn.execute(text("SELECT totp_secret, totp_enabled, recovery_codes FROM users WHERE id = :u"),
                           {"u": staff.id}).one()
    assert row.totp_enabled and secret not in row.totp_secret
    assert len(row.recovery_codes) == 10 and not set(codes) & set(row.recovery_codes)
    assert not any(c.replace("-", "") in str(row.recovery_codes) for c in codes)

    problem(await api.post("/v1/auth/login", json={"email": staff.email, "password": staff.password}),
            401, "mfa_required")
    problem(await api.post("/v1/auth/login", json={"email": staff.email, "password": staff.password,
                                                   "otp": wrong}), 401, "invalid_otp")
    problem(await api.post("/v1/auth/login", json={"email": staff.email, "password": "Wrong-Password-1!",
                                                   "otp": totp.now()}), 401, "invalid_credentials")
    code = unused_code(totp, used)
    signed = await sign_in(api, staff.email, otp=code)
    assert (await api.get("/v1/venues", headers=bearer(signed["access_token"]))).status_code == 200
    # The same code twice is a replay.
    problem(await api.post("/v1/auth/login", json={"email": staff.email, "password": staff.password, "otp": code}),
            401, "invalid_otp")

    actions = [a for a, _ in audit_actions(owner_engine, staff.id)]
    assert {"auth.mfa_enrolment_started", "auth.mfa_enabled"} <= set(actions)
    logins = [c for a, c in audit_actions(owner_engine, staff.id) if a == "auth.login"]
    assert logins[-1]["second_factor"] == "totp" and logins[-1]["method"] == "password"


async def test_a_recovery_code_works_once_in_place_of_a_code(api, tenant, owner_engine):
    staff = await make_staff(tenant)
    pair = await sign_in(api, staff.email)
    totp, confirmed = await enrol_totp(api, pair["access_token"])
    code = confirmed["recovery_codes"][3]

    signed = await sign_in(api, staff.email, otp=code.lower())  # as typed, in any case
    assert (await api.get("/v1/venues", headers=bearer(signed["access_token"]))).status_code == 200
    problem(await api.post("/v1/auth/login", json={"email": staff.email, "password": staff.password, "otp": code}),
            401, "invalid_otp")
    await sign_in(api, staff.email, otp=confirmed["recovery_codes"][4])
    with owner_engine.connect() as conn:
        left = conn.execute(text("SELECT jsonb_array_length(recovery_codes) FROM users WHERE id = :u"),
                            {"u": staff.id}).scalar_one()
    assert left == 8
    used = [c for a, c in audit_actions(owner_engine, staff.id) if a == "auth.recovery_code_used"]
    assert [u["recovery_codes_left"] for u in used] == [9, 8]


async def test_turning_totp_off_needs_a_code(api, tenant, owner_engine):
    staff = await make_staff(tenant)
    pair = await sign_in(api, staff.email)
    totp, confirmed = await enrol_totp(api, pair["access_token"])
    token = confirmed["access_token"]
    problem(await api.post("/v1/auth/mfa/totp/disable", headers=bearer(token), json={"otp": "000000"}),
            422, "invalid_otp")
    off = await api.post("/v1/auth/mfa/totp/disable", headers=bearer(token),
                         json={"otp": confirmed["recovery_codes"][0]})
    assert off.status_code == 204, off.text
    await sign_in(api, staff.email)  # no code needed any more
    problem(await api.post("/v1/auth/mfa/totp/disable", headers=bearer(token), json={"otp": totp.now()}),
            409, "mfa_not_enabled")
    assert "auth.mfa_disabled" in [a for a, _ in audit_actions(owner_engine, staff.id)]


@pytest.mark.usefixtures("throttling")
async def test_wrong_codes_count_as_failed_attempts(api, tenant):
    staff = await make_staff(tenant)
    pair = await sign_in(api, staff.email)
    totp, _ = await enrol_totp(api, pair["access_token"])
    guesses = [g for g in ("111111", "222222", "333333", "444444", "555555", "666666", "777777")
               if g not in valid_codes(totp)]
    for guess in guesses[:5]:
        problem(await api.post("/v1/auth/login", json={"email": staff.email, "password": staff.password,
                                                       "otp": guess}), 401, "invalid_otp")
    refused = await api.post("/v1/auth/login", json={"email": staff.email, "password": staff.password,
                                                     "otp": totp.now()})
    problem(refused, 429, "too_many_attempts")
    assert int(refused.headers["retry-after"]) > 0


async def test_an_organization_can_require_mfa_for_its_admin_roles(api, tenant, owner_engine):
    owner = tenant.headers
    assert (await api.get("/v1/organization/settings", headers=owner)).json()["require_mfa_for"] == []
    org_admin = await make_staff(tenant, "org-admin")
    org_admin_pair = await sign_in(api, org_admin.email)
    problem(await api.patch("/v1/organization/settings", headers=bearer(org_admin_pair["access_token"]),
                            json={"require_mfa_for": []}), 403, "permission_denied")
    problem(await api.patch("/v1/organization/settings", headers=owner, json={"require_mfa_for": ["owner"]}),
            422, "validation_error")
    problem(await api.patch("/v1/organization/settings", headers=owner, json={"mfa": True}), 422, "validation_error")
    changed = await api.patch("/v1/organization/settings", headers=owner,
                              json={"require_mfa_for": ["admin", "org-admin", "admin"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["require_mfa_for"] == ["org-admin", "admin"]
    assert (await api.get("/v1/organization/settings", headers=owner)).json() == changed.json()
    with owner_engine.connect() as conn:
        audited = conn.execute(text("SELECT changes FROM audit_log WHERE organization_id = :o AND action = "
                                    "'organization.settings_changed'"), {"o": tenant.organization_id}).scalar_one()
    assert audited["require_mfa_for"] == {"from": [], "to": ["org-admin", "admin"]}

    # An admin who has not enrolled gets a token that can only enrol (and read /v1/me).
    admin = await make_staff(tenant, "admin")
    restricted = await sign_in(api, admin.email)
    assert restricted["mfa_enrollment_required"] is True
    token = restricted["access_token"]
    for method, path in [("GET", "/v1/venues"), ("GET", "/v1/bookings"), ("GET", "/v1/organization/settings")]:
        problem(await api.request(method, path, headers=bearer(token)), 403, "mfa_enrollment_required")
    problem(await api.post("/v1/auth/password", headers=bearer(token),
                           json={"current_password": admin.password, "new_password": "Brand-New-Pass-77"}),
            403, "mfa_enrollment_required")
    me = await api.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["restricted_to"] == "mfa_enrollment"
    refreshed = (await api.post("/v1/auth/refresh", json={"refresh_token": restricted["refresh_token"]})).json()
    problem(await api.get("/v1/venues", headers=bearer(refreshed["access_token"])), 403, "mfa_enrollment_required")

    used: set[str] = set()
    totp, confirmed = await enrol_totp(api, refreshed["access_token"], used)
    assert confirmed["mfa_enrollment_required"] is False
    assert (await api.get("/v1/venues", headers=bearer(confirmed["access_token"]))).status_code == 200
    problem(await api.post("/v1/auth/login", json={"email": admin.email, "password": admin.password}),
            401, "mfa_required")
    full = await sign_in(api, admin.email, otp=unused_code(totp, used))
    assert full["mfa_enrollment_required"] is False

    # Roles not in the list sign in as before; so does the super-admin, whose role was not listed.
    manager = await make_staff(tenant, "manager")
    assert (await sign_in(api, manager.email))["mfa_enrollment_required"] is False
    assert (await sign_in(api, tenant.owner_email))["mfa_enrollment_required"] is False
    # Taking the requirement away lifts it at the next sign-in.
    assert (await api.patch("/v1/organization/settings", headers=owner, json={"require_mfa_for": []})).status_code == 200
    assert (await sign_in(api, org_admin.email))["mfa_enrollment_required"] is False
