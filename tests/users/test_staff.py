"""Staff and roles over HTTP: inviting with a temporary password sent through the outbox, the rank
rules, the last super-admin, deactivation that ends sessions at once, role changes that apply on
the very next request, and the plan's staff limit."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text

from bookingtms.auth.passwords import hash_password
from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.models import users
from tests.factories import PASSWORD, Tenant, bearer, make_tenant, unique

NEW_PASSWORD = "Brand-New-Passw0rd!"
SECRET_KEYS = {"password", "password_hash", "temporary_password", "totp_secret", "recovery_codes", "token_version",
               "oidc_subject"}


def email_in(tenant: Tenant, prefix: str = "staff") -> str:
    return f"{unique(prefix)}@o{tenant.organization_id[:8]}.example.com"


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict:
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


async def invite(client: httpx.AsyncClient, tenant: Tenant, role: str, headers: dict | None = None,
                 email: str | None = None, **extra_headers: str) -> httpx.Response:
    return await client.post("/v1/users", headers={**(headers or tenant.headers), **extra_headers},
                             json={"email": email or email_in(tenant, role), "full_name": f"A {role}", "role": role})


def temporary_password(owner_engine, email: str) -> str:
    with owner_engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, payload FROM notification_outbox WHERE recipient = :e"),
                            {"e": email}).all()
    assert [r.kind for r in rows] == ["staff_invite"], rows
    return rows[0].payload["temporary_password"]


async def member(client: httpx.AsyncClient, tenant: Tenant, role: str) -> tuple[str, str]:
    """A signed-in member of `role`, invited through the API: (user id, access token)."""
    response = await invite(client, tenant, role)
    assert response.status_code == 201, response.text
    user = response.json()
    # Skips the first-sign-in password change (tested on its own below): sets a known password.
    org = uuid.UUID(tenant.organization_id)
    async with tenant_transaction(DbContext(organization_id=org)) as db:
        await db.execute(users.update().where(users.c.id == uuid.UUID(user["id"]))
                         .values(password_hash=hash_password(PASSWORD), must_change_password=False))
    return user["id"], (await sign_in(client, user["email"]))["access_token"]


async def owner_id(client: httpx.AsyncClient, tenant: Tenant) -> str:
    return (await client.get("/v1/me", headers=tenant.headers)).json()["id"]


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    assert response.json()["code"] == code, response.text


# ------------------------------------------------------------------------------------------------
# Inviting
# ------------------------------------------------------------------------------------------------
async def test_invitee_signs_in_with_the_emailed_temporary_password_and_must_change_it(client, tenant, owner_engine):
    email = email_in(tenant, "Invitee").upper()
    key = unique("invite-key")
    first = await invite(client, tenant, "manager", email=email, **{"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    user = first.json()
    assert user["email"] == email.lower() and user["role"] == "manager" and user["is_active"] is True
    assert user["must_change_password"] is True and user["organization_id"] == tenant.organization_id
    assert not SECRET_KEYS & user.keys(), user

    # A retry with the same key answers alike and invites nobody twice.
    again = await invite(client, tenant, "manager", email=email, **{"Idempotency-Key": key})
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true", again.text
    assert again.json()["id"] == user["id"]
    password = temporary_password(owner_engine, email.lower())  # exactly one outbox row
    with owner_engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*), min(invited_by::text) FROM users WHERE email = :e"),
                              {"e": email.lower()}).one()
    assert tuple(stored) == (1, await owner_id(client, tenant))

    # The temporary password signs in, but only to change it.
    signed = await sign_in(client, email, password)
    assert signed["must_change_password"] is True
    limited = bearer(signed["access_token"])
    response = await client.get("/v1/bookings", headers=limited)
    assert_problem(response, 403, "password_change_required")
    response = await client.post("/v1/auth/password", headers=limited,
                                 json={"current_password": password, "new_password": NEW_PASSWORD})
    assert response.status_code == 204, response.text

    token = (await sign_in(client, email, NEW_PASSWORD))["access_token"]
    me = await client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["role"] == "manager" and me.json()["must_change_password"] is False
    assert (await client.get("/v1/bookings", headers=bearer(token))).status_code == 200

    listed = await client.get("/v1/users", headers=tenant.headers, params={"limit": 200})
    assert listed.status_code == 200, listed.text
    mine = [u for u in listed.json()["items"] if u["id"] == user["id"]]
    assert mine and mine[0]["must_change_password"] is False and mine[0]["last_login_at"] is not None


async def test_staff_list_is_paginated_filtered_and_holds_no_secrets(client, tenant):
    for role in ("staff", "staff", "manager"):
        assert (await invite(client, tenant, role)).status_code == 201
    seen, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/users", headers=tenant.headers, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= 1
        for item in body["items"]:
            assert not SECRET_KEYS & item.keys(), item
            assert item["organization_id"] == tenant.organization_id
        seen += [item["email"] for item in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 4 and seen == sorted(seen) and tenant.owner_email in seen
    staff = await client.get("/v1/users", headers=tenant.headers, params={"role": "staff"})
    assert [u["role"] for u in staff.json()["items"]] == ["staff", "staff"]


async def test_an_email_is_taken_platform_wide(client, tenant, platform_admin, owner_engine):
    other = await make_tenant(client, platform_admin)
    for taken in (tenant.owner_email, other.owner_email.upper(), platform_admin.email):
        response = await invite(client, tenant, "staff", email=taken)
        assert_problem(response, 409, "email_taken")
        assert response.json()["field"] == "email"
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE organization_id = :o"),
                            {"o": tenant.organization_id}).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM notification_outbox WHERE organization_id = :o "
                                 "AND kind = 'staff_invite'"), {"o": tenant.organization_id}).scalar() == 0


async def test_bad_invites_and_edits_are_422(client, tenant):
    cases = [
        {"email": "not-an-email", "full_name": "X", "role": "staff"},
        {"email": "x@example.com", "full_name": "X", "role": "system-admin"},
        {"email": "x@example.com", "full_name": "", "role": "staff"},
        {"email": "x@example.com", "full_name": "X", "role": "staff", "password": "Chosen-By-Me-123!"},
    ]
    for body in cases:
        response = await client.post("/v1/users", headers=tenant.headers, json=body)
        assert response.status_code == 422, f"{body}: {response.text}"
    user_id = await owner_id(client, tenant)
    for body in ({"role": None}, {"is_active": None}, {"role": "system-admin"}, {"email": "new@example.com"}):
        response = await client.patch(f"/v1/users/{user_id}", headers=tenant.headers, json=body)
        assert response.status_code == 422, f"{body}: {response.text}"
    response = await client.patch(f"/v1/users/{uuid.uuid4()}", headers=tenant.headers, json={"full_name": "Nobody"})
    assert_problem(response, 404, "user_not_found")


# ------------------------------------------------------------------------------------------------
# Rank rules and the last super-admin
# ------------------------------------------------------------------------------------------------
async def test_nobody_grants_a_role_above_their_own_nor_changes_a_higher_ranked_user(client, tenant, owner_engine):
    admin_id, admin_token = await member(client, tenant, "org-admin")
    org_admin = bearer(admin_token)
    boss = await owner_id(client, tenant)

    response = await invite(client, tenant, "super-admin", headers=org_admin)
    assert_problem(response, 403, "role_too_high")
    peer = await invite(client, tenant, "org-admin", headers=org_admin)  # an equal rank may be given
    assert peer.status_code == 201, peer.text

    staff_id = (await invite(client, tenant, "staff")).json()["id"]
    response = await client.patch(f"/v1/users/{staff_id}", headers=org_admin, json={"role": "super-admin"})
    assert_problem(response, 403, "role_too_high")
    response = await client.patch(f"/v1/users/{admin_id}", headers=org_admin, json={"role": "super-admin"})
    assert_problem(response, 403, "role_too_high")  # not even oneself
    response = await client.patch(f"/v1/users/{staff_id}", headers=org_admin, json={"role": "admin"})
    assert response.status_code == 200 and response.json()["role"] == "admin", response.text

    # The super-admin above them is out of reach, whatever the change.
    for method, body in (("PATCH", {"full_name": "Demoted"}), ("PATCH", {"role": "staff"}),
                         ("PATCH", {"is_active": False}), ("DELETE", None)):
        response = await client.request(method, f"/v1/users/{boss}", headers=org_admin, json=body)
        assert_problem(response, 403, "role_too_high")
    with owner_engine.connect() as conn:
        row = conn.execute(text("SELECT role, is_active, full_name FROM users WHERE id = :u"), {"u": boss}).one()
    assert tuple(row) == ("super-admin", True, "Owner")


async def test_the_last_active_super_admin_stays(client, tenant):
    boss = await owner_id(client, tenant)
    for method, body in (("PATCH", {"role": "org-admin"}), ("PATCH", {"is_active": False}), ("DELETE", None)):
        response = await client.request(method, f"/v1/users/{boss}", headers=tenant.headers, json=body)
        assert_problem(response, 409, "last_super_admin")
    # A deactivated super-admin does not count as a second one.
    dormant_id, _ = await member(client, tenant, "super-admin")
    assert (await client.delete(f"/v1/users/{dormant_id}", headers=tenant.headers)).status_code == 204
    response = await client.patch(f"/v1/users/{boss}", headers=tenant.headers, json={"role": "org-admin"})
    assert_problem(response, 409, "last_super_admin")

    # With a second active super-admin, the first may step down; then the second is the last.
    second_id, second_token = await member(client, tenant, "super-admin")
    response = await client.patch(f"/v1/users/{boss}", headers=bearer(second_token), json={"role": "org-admin"})
    assert response.status_code == 200 and response.json()["role"] == "org-admin", response.text
    response = await client.patch(f"/v1/users/{second_id}", headers=tenant.headers, json={"role": "staff"})
    assert_problem(response, 403, "role_too_high")  # the former owner now ranks below
    response = await client.delete(f"/v1/users/{second_id}", headers=bearer(second_token))
    assert_problem(response, 409, "last_super_admin")


async def test_two_super_admins_demoting_each_other_at_once_leave_one(client, tenant, owner_engine):
    boss = await owner_id(client, tenant)
    second_id, second_token = await member(client, tenant, "super-admin")
    responses = await asyncio.gather(
        client.patch(f"/v1/users/{second_id}", headers=tenant.headers, json={"role": "staff"}),
        client.patch(f"/v1/users/{boss}", headers=bearer(second_token), json={"role": "staff"}))
    statuses = sorted(r.status_code for r in responses)
    # The one decided second finds either no other super-admin (409) or that it no longer outranks
    # the target (403): either way, exactly one change is made.
    assert statuses[0] == 200 and statuses[1] in (403, 409), [r.text for r in responses]
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE organization_id = :o AND role = 'super-admin' "
                                 "AND is_active"), {"o": tenant.organization_id}).scalar() == 1


# ------------------------------------------------------------------------------------------------
# Deactivation and role changes apply at once
# ------------------------------------------------------------------------------------------------
async def test_deactivation_ends_every_session_at_once_and_refuses_sign_in(client, tenant):
    user_id, first_token = await member(client, tenant, "manager")
    email = (await client.get("/v1/me", headers=bearer(first_token))).json()["email"]
    pair = await sign_in(client, email)
    headers = bearer(pair["access_token"])
    assert (await client.get("/v1/bookings", headers=headers)).status_code == 200  # state now cached

    response = await client.delete(f"/v1/users/{user_id}", headers=tenant.headers)
    assert response.status_code == 204, response.text
    for path in ("/v1/me", "/v1/bookings"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, f"{path}: {response.text}"
    response = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 401, response.text
    response = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 401 and response.json()["code"] == "invalid_credentials", response.text

    listed = (await client.get("/v1/users", headers=tenant.headers, params={"active": "false"})).json()["items"]
    assert [(u["id"], u["is_active"]) for u in listed] == [(user_id, False)]
    assert listed[0]["deactivated_at"] is not None
    assert (await client.delete(f"/v1/users/{user_id}", headers=tenant.headers)).status_code == 204  # idempotent

    # Reactivated, they sign in again; the tokens from before stay dead.
    response = await client.patch(f"/v1/users/{user_id}", headers=tenant.headers, json={"is_active": True})
    assert response.status_code == 200 and response.json()["deactivated_at"] is None, response.text
    assert (await client.get("/v1/me", headers=headers)).status_code == 401
    fresh = await sign_in(client, email)
    assert (await client.get("/v1/me", headers=bearer(fresh["access_token"]))).status_code == 200


async def test_a_role_change_applies_on_the_very_next_request(client, tenant):
    user_id, token = await member(client, tenant, "manager")
    headers = bearer(token)
    response = await client.get("/v1/users", headers=headers)
    assert_problem(response, 403, "permission_denied")  # and the manager's state is now cached

    response = await client.patch(f"/v1/users/{user_id}", headers=tenant.headers, json={"role": "admin"})
    assert response.status_code == 200, response.text
    assert (await client.get("/v1/users", headers=headers)).status_code == 200
    assert (await client.get("/v1/me", headers=headers)).json()["role"] == "admin"

    response = await client.patch(f"/v1/users/{user_id}", headers=tenant.headers, json={"role": "staff"})
    assert response.status_code == 200, response.text
    response = await client.post("/v1/bookings/00000000-0000-0000-0000-000000000000/cancel", headers=headers,
                                 json={"refund": "none"})
    assert_problem(response, 403, "permission_denied")

    # A name change alone is not a sign-in matter, but it is kept.
    response = await client.patch(f"/v1/users/{user_id}", headers=tenant.headers, json={"full_name": "Renamed Person"})
    assert response.status_code == 200 and response.json()["full_name"] == "Renamed Person"
    assert (await client.get("/v1/me", headers=headers)).status_code == 200


# ------------------------------------------------------------------------------------------------
# The plan's staff limit
# ------------------------------------------------------------------------------------------------
async def test_the_free_plan_allows_three_active_staff(client, platform_admin, owner_engine):
    tenant = await make_tenant(client, platform_admin, plan="free")  # max_staff 3, the owner is one
    first, second = (await invite(client, tenant, "staff")).json(), (await invite(client, tenant, "manager")).json()
    assert first["id"] and second["id"]
    third_email = email_in(tenant)
    response = await invite(client, tenant, "staff", email=third_email)
    assert_problem(response, 403, "plan_limit_reached")
    assert response.json()["limit"] == "max_staff" and "max_staff" in response.json()["detail"]
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE email = :e"), {"e": third_email}).scalar() == 0

    # Deactivated staff free their seat; taking it back needs a free seat again.
    assert (await client.delete(f"/v1/users/{first['id']}", headers=tenant.headers)).status_code == 204
    assert (await invite(client, tenant, "staff", email=third_email)).status_code == 201
    response = await client.patch(f"/v1/users/{first['id']}", headers=tenant.headers, json={"is_active": True})
    assert_problem(response, 403, "plan_limit_reached")


async def test_concurrent_invites_for_the_last_seat_take_it_once(client, platform_admin, owner_engine):
    tenant = await make_tenant(client, platform_admin, plan="free")
    assert (await invite(client, tenant, "staff")).status_code == 201  # one seat left
    responses = await asyncio.gather(*(invite(client, tenant, "staff") for _ in range(3)))
    assert sorted(r.status_code for r in responses) == [201, 403, 403], [r.text for r in responses]
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE organization_id = :o AND is_active"),
                            {"o": tenant.organization_id}).scalar() == 3
