"""API keys as an integration would use them: shown once, scoped, revocable, stored hashed."""

import hashlib

from sqlalchemy import text

from tests.factories import add_staff, bearer


async def _create(client, tenant, permissions, name="booking sync"):
    return await client.post("/v1/api-keys", headers=tenant.headers, json={"name": name, "permissions": permissions})


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(client, tenant, owner_engine):
    created = await _create(client, tenant, ["venues.view"])
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    assert secret.startswith(f"btms_{body['prefix']}_")

    listed = (await client.get("/v1/api-keys", headers=tenant.headers)).json()["items"]
    assert [k["prefix"] for k in listed] == [body["prefix"]]
    assert "secret" not in listed[0] and "secret_hash" not in listed[0]
    assert secret not in (await client.get("/v1/api-keys", headers=tenant.headers)).text

    with owner_engine.connect() as conn:
        stored = conn.execute(text("SELECT secret_hash FROM api_keys WHERE id = :i"), {"i": body["id"]}).scalar_one()
        dump = conn.execute(text("SELECT string_agg(t::text, ' ') FROM api_keys t")).scalar_one()
    assert stored == hashlib.sha256(secret.split("_", 2)[2].encode()).hexdigest()
    assert secret.split("_", 2)[2] not in dump


async def test_a_key_can_do_what_it_names_and_nothing_else(client, tenant):
    secret = (await _create(client, tenant, ["venues.view"])).json()["secret"]
    venues = await client.get("/v1/venues", headers=bearer(secret))
    assert venues.status_code == 200 and venues.json()["items"][0]["id"] == tenant.venue_id
    refused = await client.get("/v1/bookings", headers=bearer(secret))
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    me = (await client.get("/v1/me", headers=bearer(secret))).json()
    assert me["kind"] == "api_key" and me["organization_id"] == tenant.organization_id
    assert me["email"] is None and me["full_name"] == "booking sync" and me["role"] == "api-key"
    assert me["permissions"] == ["venues.view"]


async def test_use_is_recorded_and_revocation_is_immediate(client, tenant):
    body = (await _create(client, tenant, ["venues.view"])).json()
    assert body["last_used_at"] is None
    assert (await client.get("/v1/venues", headers=bearer(body["secret"]))).status_code == 200
    listed = (await client.get("/v1/api-keys", headers=tenant.headers)).json()["items"]
    assert listed[0]["last_used_at"] is not None

    assert (await client.delete(f"/v1/api-keys/{body['id']}", headers=tenant.headers)).status_code == 204
    after = await client.get("/v1/venues", headers=bearer(body["secret"]))
    assert after.status_code == 401 and after.json()["code"] == "invalid_token"
    assert (await client.get("/v1/api-keys", headers=tenant.headers)).json()["items"][0]["revoked_at"] is not None


async def test_nobody_hands_out_more_than_they_hold(client, tenant):
    unknown = await _create(client, tenant, ["bookings.teleport"])
    assert unknown.status_code == 422 and "bookings.teleport" in unknown.json()["detail"]
    # org-admin holds api_keys.manage but not organization.manage
    org_admin = await add_staff(client, tenant, "org-admin")
    beyond = await client.post("/v1/api-keys", headers=bearer(org_admin),
                               json={"name": "too much", "permissions": ["organization.manage"]})
    assert beyond.status_code == 403 and beyond.json()["code"] == "permission_denied"
    manager = await add_staff(client, tenant, "manager")
    denied = await client.post("/v1/api-keys", headers=bearer(manager),
                               json={"name": "nope", "permissions": ["bookings.view"]})
    assert denied.status_code == 403


async def test_a_guessed_secret_with_a_real_prefix_is_refused(client, tenant):
    body = (await _create(client, tenant, ["venues.view"])).json()
    forged = f"btms_{body['prefix']}_{'A' * 43}"
    response = await client.get("/v1/venues", headers=bearer(forged))
    assert response.status_code == 401
