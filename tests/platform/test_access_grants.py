"""Access grants: the only way a platform admin acts inside an organization. Without a live grant
every organization endpoint answers 404; with one the admin reads and changes the organization's
data, each request audited; after revocation or expiry it is 404 again, and the end is audited."""

from __future__ import annotations

import re
import uuid

from bookingtms.worker import run_once
from tests.factories import make_platform_admin

NOT_ORGANIZATION = ("/v1/auth", "/v1/platform", "/v1/public", "/v1/webhooks", "/v1/me")


def _organization_operations(app) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI document that acts inside the caller's organization (walks
    endpoints added later, too)."""
    ops = []
    for path, methods in app.openapi()["paths"].items():
        if not path.startswith("/v1/") or path.startswith(NOT_ORGANIZATION):
            continue
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        ops += [(method.upper(), concrete) for method in methods if method in ("get", "post", "put", "patch", "delete")]
    return ops


def _as(admin, org_id: str) -> dict[str, str]:
    return admin.headers | {"X-Organization-Id": org_id}


async def _grant(client, admin, org_id: str, minutes: int = 30):
    return await client.post(f"/v1/platform/organizations/{org_id}/access-grants", headers=admin.headers,
                             json={"reason": "Support ticket #4711: calendar looks wrong", "duration_minutes": minutes})


async def test_without_a_grant_every_organization_endpoint_is_404(client, app, platform_admin, tenant):
    operations = _organization_operations(app)
    assert len(operations) > 20 and ("POST", "/v1/venues") in operations
    for method, path in operations:
        response = await client.request(method, path, headers=_as(platform_admin, tenant.organization_id), json={})
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert tenant.organization_id not in response.text
    # a malformed or unknown organization id looks the same
    for org in ("not-a-uuid", str(uuid.uuid4())):
        response = await client.get("/v1/venues", headers=_as(platform_admin, org))
        assert response.status_code == 404
    # and without the header the platform account is no member of any organization
    assert (await client.get("/v1/venues", headers=platform_admin.headers)).status_code == 403


async def test_a_grant_lets_its_admin_read_and_change_the_organization_every_request_audited(
        client, platform_admin, tenant, audit_rows):
    created = await _grant(client, platform_admin, tenant.organization_id, minutes=15)
    assert created.status_code == 201, created.text
    grant = created.json()
    assert grant["active"] is True and grant["revoked_at"] is None
    assert grant["organization_id"] == tenant.organization_id
    [created_row] = audit_rows(tenant.organization_id, "access_grant.created")
    assert created_row["actor_type"] == "platform" and created_row["actor_label"] == platform_admin.email
    assert created_row["target_id"] == grant["id"]
    assert created_row["changes"]["reason"].startswith("Support ticket") and created_row["changes"]["duration_minutes"] == 15

    venues = await client.get("/v1/venues", headers=_as(platform_admin, tenant.organization_id))
    assert venues.status_code == 200, venues.text
    assert [v["id"] for v in venues.json()["items"]] == [tenant.venue_id]
    renamed = await client.patch(f"/v1/venues/{tenant.venue_id}", headers=_as(platform_admin, tenant.organization_id),
                                 json={"name": "Renamed by support"})
    assert renamed.status_code == 200, renamed.text
    seen_by_owner = await client.get(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers)
    assert seen_by_owner.json()["name"] == "Renamed by support"

    used = audit_rows(tenant.organization_id, "access_grant.used")
    assert [(r["changes"]["method"], r["changes"]["path"]) for r in used] == [
        ("GET", "/v1/venues"), ("PATCH", f"/v1/venues/{tenant.venue_id}")]
    assert all(r["target_id"] == grant["id"] and r["actor_type"] == "platform" for r in used)

    # the grant is personal and for this organization only
    colleague = await make_platform_admin(client)
    assert (await client.get("/v1/venues", headers=_as(colleague, tenant.organization_id))).status_code == 404
    listed = await client.get(f"/v1/platform/organizations/{tenant.organization_id}/access-grants",
                              headers=platform_admin.headers)
    assert [g["id"] for g in listed.json()["items"]] == [grant["id"]]


async def test_revoking_ends_access_at_once_and_is_audited_once(client, platform_admin, tenant, audit_rows):
    grant = (await _grant(client, platform_admin, tenant.organization_id)).json()
    assert (await client.get("/v1/venues", headers=_as(platform_admin, tenant.organization_id))).status_code == 200

    revoked = await client.delete(f"/v1/platform/organizations/{tenant.organization_id}/access-grants/{grant['id']}",
                                  headers=platform_admin.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["active"] is False and revoked.json()["revoked_at"] is not None
    assert (await client.get("/v1/venues", headers=_as(platform_admin, tenant.organization_id))).status_code == 404

    again = await client.delete(f"/v1/platform/organizations/{tenant.organization_id}/access-grants/{grant['id']}",
                                headers=platform_admin.headers)
    assert again.status_code == 409 and again.json()["code"] == "access_grant_ended"
    unknown = await client.delete(f"/v1/platform/organizations/{tenant.organization_id}/access-grants/{uuid.uuid4()}",
                                  headers=platform_admin.headers)
    assert unknown.status_code == 404

    await run_once(extend=False)
    [row] = audit_rows(tenant.organization_id, "access_grant.revoked")
    assert row["actor_type"] == "platform" and row["target_id"] == grant["id"]
    assert audit_rows(tenant.organization_id, "access_grant.expired") == []  # its end is written once


async def test_expired_grants_stop_working_and_the_job_audits_each_end_once(
        client, platform_admin, tenant, audit_rows, owner_sql):
    grant = (await _grant(client, platform_admin, tenant.organization_id, minutes=1)).json()
    assert (await client.get("/v1/venues", headers=_as(platform_admin, tenant.organization_id))).status_code == 200
    owner_sql("UPDATE access_grants SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour' "
              "WHERE id = :id", id=grant["id"])

    assert (await client.get("/v1/venues", headers=_as(platform_admin, tenant.organization_id))).status_code == 404
    listed = await client.get(f"/v1/platform/organizations/{tenant.organization_id}/access-grants",
                              headers=platform_admin.headers)
    assert listed.json()["items"][0]["active"] is False

    first = await run_once(extend=False)
    assert first["access_grants_ended"] >= 1
    second = await run_once(extend=False)
    assert second["access_grants_ended"] == 0
    [row] = audit_rows(tenant.organization_id, "access_grant.expired")
    assert row["target_id"] == grant["id"] and row["actor_type"] == "system"

    # a fresh grant opens the door again
    assert (await _grant(client, platform_admin, tenant.organization_id)).status_code == 201
    assert (await client.get("/v1/venues", headers=_as(platform_admin, tenant.organization_id))).status_code == 200


async def test_grant_requests_are_checked(client, platform_admin, tenant):
    path = f"/v1/platform/organizations/{tenant.organization_id}/access-grants"
    for body in ({"reason": "x", "duration_minutes": 10}, {"reason": "long enough", "duration_minutes": 0},
                 {"reason": "long enough", "duration_minutes": 1441}, {"duration_minutes": 10},
                 {"reason": "   ab   ", "duration_minutes": 10}):
        response = await client.post(path, headers=platform_admin.headers, json=body)
        assert response.status_code == 422, (body, response.text)
    missing = await client.post(f"/v1/platform/organizations/{uuid.uuid4()}/access-grants",
                                headers=platform_admin.headers, json={"reason": "support", "duration_minutes": 5})
    assert missing.status_code == 404
    assert (await client.get(f"/v1/platform/organizations/{uuid.uuid4()}/access-grants",
                             headers=platform_admin.headers)).status_code == 404
    assert (await client.get(path, headers=platform_admin.headers)).json()["items"] == []


async def test_a_retried_grant_request_creates_one_grant(client, platform_admin, tenant, audit_rows):
    path = f"/v1/platform/organizations/{tenant.organization_id}/access-grants"
    body = {"reason": "Export requested by owner", "duration_minutes": 60}
    headers = platform_admin.headers | {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post(path, headers=headers, json=body)
    retry = await client.post(path, headers=headers, json=body)
    assert first.status_code == retry.status_code == 201
    assert retry.headers.get("Idempotent-Replayed") == "true" and retry.json()["id"] == first.json()["id"]
    assert len((await client.get(path, headers=platform_admin.headers)).json()["items"]) == 1
    assert len(audit_rows(tenant.organization_id, "access_grant.created")) == 1
