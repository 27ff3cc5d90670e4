"""Platform test helpers: organizations with chosen names, the organization PATCH."""

from __future__ import annotations

from typing import Any

from tests.factories import PASSWORD, Tenant, login, unique


async def create_org(client, admin, *, name: str | None = None, plan: str = "enterprise") -> Tenant:
    slug = unique("org")
    owner_email = f"owner@{slug}.example.com"
    response = await client.post("/v1/platform/organizations", headers=admin.headers, json={
        "name": name or f"Org {slug}", "slug": slug, "plan": plan,
        "owner": {"email": owner_email, "full_name": "Owner", "password": PASSWORD}})
    assert response.status_code == 201, response.text
    body = response.json()
    return Tenant(organization_id=body["organization"]["id"], venue_id=body["venue"]["id"],
                  embed_key=body["venue"]["embed_key"], owner_email=owner_email,
                  token=await login(client, owner_email), extra={"slug": slug})


async def patch_org(client, admin, org_id: str, **changes: Any):
    return await client.patch(f"/v1/platform/organizations/{org_id}", headers=admin.headers, json=changes)
