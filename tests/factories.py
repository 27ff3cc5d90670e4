"""Builders that set up tenants the way a real business would: through the HTTP API."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
from fastapi.routing import APIRoute

from bookingtms.auth.passwords import hash_password
from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.models import users

PASSWORD = "Correct-Horse-9-Battery"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class PlatformAdmin:
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Tenant:
    organization_id: str
    venue_id: str
    embed_key: str
    owner_email: str
    token: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def make_platform_admin(client: httpx.AsyncClient) -> PlatformAdmin:
    from bookingtms.auth.service import create_platform_admin

    email = f"{unique('root')}@platform.example.com"
    await create_platform_admin(email, PASSWORD, "Test Platform Admin")
    return PlatformAdmin(email=email, token=await login(client, email))


async def make_tenant(client: httpx.AsyncClient, admin: PlatformAdmin, *, timezone_name: str = "America/New_York",
                      plan: str = "enterprise") -> Tenant:
    slug = unique("org")
    owner_email = f"owner@{slug}.example.com"
    response = await client.post("/v1/platform/organizations", headers=admin.headers, json={
        "name": f"Org {slug}", "slug": slug, "plan": plan, "timezone": timezone_name,
        "owner": {"email": owner_email, "full_name": "Owner", "password": PASSWORD}})
    assert response.status_code == 201, response.text
    body = response.json()
    return Tenant(organization_id=body["organization"]["id"], venue_id=body["venue"]["id"],
                  embed_key=body["venue"]["embed_key"], owner_email=owner_email,
                  token=await login(client, owner_email))


async def add_staff(client: httpx.AsyncClient, tenant: Tenant, role: str) -> str:
    """A staff member of `role` in the tenant's organization; returns their access token.
    (Inserted directly: inviting staff over HTTP is the next issue's /v1/users.)"""
    email = f"{unique(role)}@o{tenant.organization_id[:8]}.example.com"
    org_id = uuid.UUID(tenant.organization_id)
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        await db.execute(users.insert().values(organization_id=org_id, email=email, full_name=role.title(),
                                               role=role, password_hash=hash_password(PASSWORD)))
    return await login(client, email)


def every_day_at(*times: str) -> dict[str, Any]:
    return {"weekly": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "times": list(times)}]}


async def make_activity(client: httpx.AsyncClient, tenant: Tenant, *, capacity: int = 10, min_players: int = 1,
                        max_players: int | None = None, price_amount: int = 2500, schedule: dict | None = None,
                        full_refund_hours: int = 24, **extra: Any) -> dict[str, Any]:
    response = await client.post("/v1/activities", headers=tenant.headers, json={
        "venue_id": tenant.venue_id, "name": unique("activity"), "duration_minutes": 60, "capacity": capacity,
        "min_players": min_players, "max_players": max_players or capacity, "price_amount": price_amount,
        "schedule": schedule if schedule is not None else every_day_at("10:00", "14:00", "18:00"),
        "cancellation_policy": {"full_refund_hours": full_refund_hours}, **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def future_session(client: httpx.AsyncClient, tenant: Tenant, activity: dict[str, Any],
                         days_ahead: int = 3) -> dict[str, Any]:
    """A generated session of `activity` a few days from now."""
    start = (datetime.now(timezone.utc) + timedelta(days=days_ahead)).date()
    response = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability", params={
        "activity_id": activity["id"], "from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat()})
    assert response.status_code == 200, response.text
    sessions = response.json()["sessions"]
    assert sessions, "the activity's schedule generated no session in that window"
    return sessions[0]


async def hold(client: httpx.AsyncClient, tenant: Tenant, session_id: str, spots: int = 1,
               email: str = "buyer@example.com") -> httpx.Response:
    return await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations",
                             json={"session_id": session_id, "spots": spots, "customer_email": email})


async def checkout(client: httpx.AsyncClient, tenant: Tenant, reservation_id: str,
                   email: str = "buyer@example.com") -> httpx.Response:
    return await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations/{reservation_id}/checkout",
                             json={"customer": {"email": email, "first_name": "Bea", "last_name": "Buyer"}})


async def book(client: httpx.AsyncClient, tenant: Tenant, session_id: str, spots: int = 1,
               email: str = "buyer@example.com") -> dict[str, Any]:
    """Hold and check out: a confirmed booking."""
    held = await hold(client, tenant, session_id, spots, email)
    assert held.status_code == 201, held.text
    done = await checkout(client, tenant, held.json()["reservation_id"], email)
    assert done.status_code == 201, done.text
    return done.json()["booking"]


def today() -> date:
    return datetime.now(timezone.utc).date()


async def run_doctor() -> tuple[int, str]:
    """`bookingtms doctor` as an operator runs it, against the test database."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bookingtms.cli", "doctor", env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(errors="replace")


def api_routes(routes) -> list[APIRoute]:
    """Every APIRoute of the app, looking inside included routers (newer FastAPI keeps an included
    router as one wrapper route holding the original router)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif getattr(route, "original_router", None) is not None:
            found.extend(api_routes(route.original_router.routes))
        elif getattr(route, "routes", None):
            found.extend(api_routes(route.routes))
    return found
