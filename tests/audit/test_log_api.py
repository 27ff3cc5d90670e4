"""GET /v1/audit-log (an organization's own trail) and GET /v1/platform/audit-log (the platform's
chain and what platform admins did): newest first, filters, cursor pagination, isolation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.audit.helpers import send
from tests.factories import make_tenant, unique


async def walk(client, path: str, headers: dict, params: dict | None = None, limit: int = 3) -> list[dict]:
    items, cursor = [], None
    while True:
        page = {**(params or {}), "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, headers=headers, params=page)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


@pytest.fixture(scope="module")
async def two_orgs(client, platform_admin):
    a, b = await make_tenant(client, platform_admin), await make_tenant(client, platform_admin)
    trail = {}
    for tenant in (a, b):
        made = []
        for name in ("North", "South"):
            response, rid = await send(client, "POST", "/v1/venues", tenant.headers,
                                       json={"name": name, "timezone": "UTC"}, expect=201)
            made.append((response.json()["id"], rid))
        venue_id = made[0][0]
        _, rid = await send(client, "PATCH", f"/v1/venues/{venue_id}", tenant.headers, json={"city": "Oslo"},
                            expect=200)
        made.append((venue_id, rid))
        trail[tenant.organization_id] = made
    return a, b, trail


async def test_an_organization_reads_its_own_trail_newest_first(client, two_orgs, owner_engine):
    a, b, trail = two_orgs
    items = await walk(client, "/v1/audit-log", a.headers)
    with owner_engine.connect() as conn:
        stored = conn.execute(text("SELECT id FROM audit_log WHERE organization_id = :o ORDER BY chain_seq DESC"),
                              {"o": a.organization_id}).scalars().all()
    assert [item["id"] for item in items] == stored  # every row, once, newest first, across pages
    assert {item["organization_id"] for item in items} == {a.organization_id}
    b_requests = {rid for _, rid in trail[b.organization_id]}
    assert not b_requests & {item["request_id"] for item in items}
    stamps = [item["created_at"] for item in items]
    assert stamps == sorted(stamps, reverse=True)
    newest = items[0]
    assert newest["action"] == "venue.updated" and newest["changes"] == {"city": {"from": "", "to": "Oslo"}}
    assert newest["actor_label"] == a.owner_email and newest["ip"] == "127.0.0.1"
    assert newest["request_id"] == trail[a.organization_id][-1][1]
    assert {"row_hash", "prev_hash"}.isdisjoint(newest)


async def test_filters(client, two_orgs):
    a, b, trail = two_orgs
    venue_id, _ = trail[a.organization_id][0]
    me = (await client.get("/v1/me", headers=a.headers)).json()

    async def actions(**params) -> list[str]:
        return [item["action"] for item in await walk(client, "/v1/audit-log", a.headers, params)]

    assert await actions(action="venue.created") == ["venue.created", "venue.created"]
    assert await actions(action="venue.*") == ["venue.updated", "venue.created", "venue.created"]
    assert await actions(action="venue") == []  # exact unless it ends with *
    assert await actions(target=venue_id) == ["venue.updated", "venue.created"]
    assert await actions(target=venue_id, target_type="booking") == []
    assert await actions(target=trail[b.organization_id][0][0]) == []  # B's venue is nowhere in A's trail
    by_id, by_email = await actions(actor=me["id"]), await actions(actor=a.owner_email.upper())
    assert by_id == by_email and "venue.created" in by_id
    assert await actions(actor=unique("nobody") + "@example.com") == []

    now = datetime.now(timezone.utc)
    everything = await actions()
    assert await actions(**{"from": (now - timedelta(hours=1)).isoformat()}) == everything
    assert await actions(**{"from": (now + timedelta(days=1)).date().isoformat()}) == []
    assert await actions(**{"to": (now - timedelta(days=1)).date().isoformat()}) == []
    assert await actions(**{"from": now.date().isoformat(), "to": now.date().isoformat()}) == everything

    for params in ({"from": "yesterday"}, {"cursor": "not-a-cursor"}, {"limit": 0}):
        response = await client.get("/v1/audit-log", headers=a.headers, params=params)
        assert response.status_code == 422, f"{params}: {response.text}"


async def test_the_platform_reads_its_own_chain_and_what_platform_admins_did(client, two_orgs, platform_admin):
    a, _, trail = two_orgs
    response = await client.get("/v1/platform/audit-log", headers=a.headers)
    assert response.status_code == 403 and response.json()["code"] == "permission_denied", response.text

    admin_rows = await walk(client, "/v1/platform/audit-log", platform_admin.headers,
                            {"actor": platform_admin.email}, limit=50)
    assert any(r["action"] == "auth.login" and r["organization_id"] is None for r in admin_rows), admin_rows
    a_requests = {rid for _, rid in trail[a.organization_id]}
    listed = await walk(client, "/v1/platform/audit-log", platform_admin.headers,
                        {"organization_id": a.organization_id}, limit=50)
    assert not a_requests & {r["request_id"] for r in listed}, "the platform sees a tenant's own events"

    # Under an access grant, what the admin does in the organization is in both trails.
    granted = await client.post(f"/v1/platform/organizations/{a.organization_id}/access-grants",
                                headers=platform_admin.headers,
                                json={"reason": "support ticket 42", "duration_minutes": 15})
    assert granted.status_code == 201, granted.text
    venue_id, _ = trail[a.organization_id][0]
    _, rid = await send(client, "PATCH", f"/v1/venues/{venue_id}",
                        {**platform_admin.headers, "X-Organization-Id": a.organization_id},
                        json={"city": "Bergen"}, expect=200)
    tenant_view = await walk(client, "/v1/audit-log", a.headers, {"action": "venue.updated", "target": venue_id})
    row = next(r for r in tenant_view if r["request_id"] == rid)
    assert row["actor_type"] == "platform" and row["actor_label"] == platform_admin.email
    assert row["changes"] == {"city": {"from": "Oslo", "to": "Bergen"}}
    platform_view = await walk(client, "/v1/platform/audit-log", platform_admin.headers,
                               {"organization_id": a.organization_id, "action": "venue.updated"}, limit=50)
    assert [r["id"] for r in platform_view if r["request_id"] == rid] == [row["id"]]
