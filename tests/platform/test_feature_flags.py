"""Feature flags: the one evaluation function (deterministic per organization, monotone in the
rollout percentage, whitelist first) and their platform API."""

from __future__ import annotations

import uuid

import pytest

from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.platform.flags import bucket, evaluate, is_enabled
from tests.factories import unique

ORGS = [uuid.UUID(int=n * 7919 + 13) for n in range(1000)]


def _on(name: str, percent: int, whitelist=(), enabled: bool = True) -> set[uuid.UUID]:
    return {o for o in ORGS if evaluate(name=name, enabled=enabled, rollout_percent=percent, org_whitelist=whitelist,
                                        organization_id=o)}


def test_buckets_are_stable_across_processes_and_releases():
    # Pinned: a change here would silently move organizations in or out of every running rollout.
    assert bucket("new-checkout", "00000000-0000-0000-0000-000000000001") == 70
    assert bucket("new-checkout", "7c9e6679-7425-40de-944b-e07fc1f90ae7") == 3
    assert bucket("new-checkout", "F47AC10B-58CC-4372-A567-0E02B2C3D479") == 37  # any spelling of the same id
    assert bucket("sms-reminders", uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")) == 11
    assert all(0 <= bucket("x", o) < 100 for o in ORGS)


def test_raising_the_percentage_only_adds_organizations():
    previous: set[uuid.UUID] = set()
    for percent in range(101):
        now_on = _on("gradual", percent)
        assert previous <= now_on, f"raising to {percent}% turned someone off"
        previous = now_on
    assert _on("gradual", 0) == set() and _on("gradual", 100) == set(ORGS)
    assert 400 <= len(_on("gradual", 50)) <= 600  # a fair split, not everyone or no one
    assert _on("gradual", 30) != _on("other-flag", 30)  # each flag splits the organizations its own way


def test_disabled_wins_then_whitelist_then_rollout():
    chosen = ORGS[:3]
    assert _on("f", 0, whitelist=chosen) == set(chosen)
    assert _on("f", 100, whitelist=chosen, enabled=False) == set()
    assert _on("f", 20, whitelist=chosen) == set(chosen) | _on("f", 20)
    assert evaluate(name="f", enabled=True, rollout_percent=99, org_whitelist=(), organization_id=None) is False
    assert evaluate(name="f", enabled=True, rollout_percent=100, org_whitelist=(), organization_id=None) is True


async def test_flag_api_and_evaluation_inside_a_tenant(client, platform_admin, tenant, audit_rows):
    name = unique("beta-widget")
    created = await client.post("/v1/platform/feature-flags", headers=platform_admin.headers, json={
        "name": name, "description": "New widget", "enabled": True, "rollout_percent": 0,
        "org_whitelist": [tenant.organization_id, tenant.organization_id]})
    assert created.status_code == 201, created.text
    flag = created.json()
    assert flag["org_whitelist"] == [tenant.organization_id]  # duplicates dropped

    org_id, stranger = uuid.UUID(tenant.organization_id), uuid.uuid4()

    async def enabled_for(org: uuid.UUID) -> bool:
        async with tenant_transaction(DbContext(organization_id=org)) as db:  # the code asks as the tenant
            return await is_enabled(db, name, org)

    assert await enabled_for(org_id) is True
    assert await enabled_for(stranger) is False  # 0% rolled out, not on the whitelist

    full = await client.patch(f"/v1/platform/feature-flags/{flag['id']}", headers=platform_admin.headers,
                              json={"rollout_percent": 100, "org_whitelist": []})
    assert full.status_code == 200 and full.json()["rollout_percent"] == 100
    assert await enabled_for(stranger) is True

    off = await client.patch(f"/v1/platform/feature-flags/{flag['id']}", headers=platform_admin.headers,
                             json={"enabled": False})
    assert off.json()["enabled"] is False
    assert await enabled_for(org_id) is False and await enabled_for(stranger) is False
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        assert await is_enabled(db, unique("never-made"), org_id) is False

    listed = await client.get("/v1/platform/feature-flags", headers=platform_admin.headers)
    assert name in [f["name"] for f in listed.json()["items"]]
    fetched = await client.get(f"/v1/platform/feature-flags/{flag['id']}", headers=platform_admin.headers)
    assert fetched.json()["enabled"] is False and fetched.json()["description"] == "New widget"

    rows = audit_rows(None, target_id=flag["id"])
    assert [r["action"] for r in rows] == ["feature_flag.created", "feature_flag.updated", "feature_flag.updated"]
    assert rows[1]["changes"]["rollout_percent"] == {"from": 0, "to": 100}
    assert rows[2]["changes"] == {"enabled": {"from": True, "to": False}}
    assert all(r["actor_type"] == "platform" for r in rows)


@pytest.mark.parametrize("body", [
    {"name": "Has Spaces"}, {"name": ""}, {"name": "ok-name", "rollout_percent": 101},
    {"name": "ok-name", "rollout_percent": -1}, {"name": "ok-name", "org_whitelist": ["not-a-uuid"]},
    {"name": "ok-name", "extra": True},
])
async def test_bad_flags_are_refused(client, platform_admin, body):
    response = await client.post("/v1/platform/feature-flags", headers=platform_admin.headers, json=body)
    assert response.status_code == 422, response.text


async def test_flag_names_are_unique_and_fixed(client, platform_admin):
    name = unique("once")
    first = await client.post("/v1/platform/feature-flags", headers=platform_admin.headers, json={"name": name})
    assert first.status_code == 201 and first.json()["enabled"] is False
    again = await client.post("/v1/platform/feature-flags", headers=platform_admin.headers, json={"name": name})
    assert again.status_code == 409 and again.json()["code"] == "flag_name_taken"
    rename = await client.patch(f"/v1/platform/feature-flags/{first.json()['id']}", headers=platform_admin.headers,
                                json={"name": unique("renamed")})
    assert rename.status_code == 422
    missing = await client.get(f"/v1/platform/feature-flags/{uuid.uuid4()}", headers=platform_admin.headers)
    assert missing.status_code == 404
