"""Tenancy and roles over the HTTP API: another organization's objects are 404, a missing or bad
token is 401, each role may do exactly what the permission matrix says, the platform and the
organizations stay on their own side, and onboarding an organization is all or nothing."""

from __future__ import annotations

import base64
import inspect
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text

from bookingtms.auth.permissions import (
    ORG_ROLES,
    PERMISSION_MATRIX,
    ROLE_RANK,
    permissions_for,
)
from tests.factories import (
    api_routes,
    PASSWORD,
    Tenant,
    add_staff,
    bearer,
    book,
    future_session,
    hold,
    login,
    make_activity,
    make_tenant,
    today,
    unique,
)

DATA_TABLES = ("venues", "activities", "activity_sessions", "customers", "slot_reservations", "bookings", "payments")


# ------------------------------------------------------------------------------------------------
# Helpers and fixtures
# ------------------------------------------------------------------------------------------------
@dataclass
class Org:
    tenant: Tenant
    activity_id: str
    session_id: str
    booking_id: str
    booking_reference: str
    reservation_id: str
    customer_id: str
    customer_email: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.tenant.organization_id

    @property
    def headers(self) -> dict[str, str]:
        return self.tenant.headers


async def _org(client, platform_admin) -> Org:
    tenant = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant, capacity=50)
    session = await future_session(client, tenant, activity)
    email = f"{unique('guest')}@example.com"
    booking = await book(client, tenant, session["id"], spots=2, email=email)
    held = await hold(client, tenant, session["id"], spots=1, email=email)  # a live hold, never checked out
    assert held.status_code == 201, held.text
    found = await client.get("/v1/customers", headers=tenant.headers, params={"q": email})
    assert found.status_code == 200, found.text
    [customer] = found.json()["items"]
    return Org(tenant=tenant, activity_id=activity["id"], session_id=session["id"], booking_id=booking["id"],
               booking_reference=booking["reference"], reservation_id=held.json()["reservation_id"],
               customer_id=customer["id"], customer_email=email)


@pytest.fixture(scope="module")
def owner(owner_engine):
    return owner_engine


@pytest.fixture(scope="module")
async def orgs(client, platform_admin) -> tuple[Org, Org]:
    return await _org(client, platform_admin), await _org(client, platform_admin)


def fingerprint(owner, org_id: str) -> dict[str, tuple]:
    """Everything an organization has in the data tables, as the owner sees it."""
    with owner.connect() as conn:
        return {t: tuple(conn.execute(text(
            f"SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {t} x WHERE organization_id = :o"),
            {"o": org_id}).one()) for t in DATA_TABLES}


def org_with_slug(owner, slug: str) -> int:
    with owner.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM organizations WHERE slug = :s"), {"s": slug}).scalar()


def assert_problem(response: httpx.Response, status: int, *codes: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    if codes:
        assert response.json()["code"] in codes, response.text


# ------------------------------------------------------------------------------------------------
# Another organization's objects are 404
# ------------------------------------------------------------------------------------------------
async def test_another_organizations_objects_answer_404(client, orgs, owner):
    a, b = orgs
    # B's real version, so that a missing tenant check would not hide behind a 412.
    b_version = (await client.get(f"/v1/sessions/{b.session_id}", headers=b.headers)).headers["etag"]
    before = fingerprint(owner, b.id)
    day = (today() + timedelta(days=5)).isoformat()
    attempts = [
        ("GET", f"/v1/venues/{b.tenant.venue_id}", None, {}),
        ("PATCH", f"/v1/venues/{b.tenant.venue_id}", {"address": "Stolen Street 1"}, {}),
        ("DELETE", f"/v1/venues/{b.tenant.venue_id}", None, {}),
        ("GET", f"/v1/activities/{b.activity_id}", None, {}),
        ("PATCH", f"/v1/activities/{b.activity_id}", {"description": "hijacked"}, {}),
        ("DELETE", f"/v1/activities/{b.activity_id}", None, {}),
        ("POST", f"/v1/activities/{b.activity_id}/sessions/generate", {"from": day, "to": day}, {}),
        ("GET", f"/v1/sessions/{b.session_id}", None, {}),
        ("PATCH", f"/v1/sessions/{b.session_id}", {"is_closed": True}, {"If-Match": b_version}),
        ("GET", f"/v1/bookings/{b.booking_id}", None, {}),
        ("GET", f"/v1/bookings/by-reference/{b.booking_reference}", None, {}),
        ("POST", f"/v1/bookings/{b.booking_id}/cancel", {"refund": "full"}, {}),
        ("POST", f"/v1/bookings/{b.booking_id}/check-in", None, {}),
        ("POST", "/v1/bookings", {"session_id": b.session_id, "guest_count": 1,
                                  "customer": {"email": "x@example.com", "first_name": "X", "last_name": "Y"}}, {}),
        ("GET", f"/v1/customers/{b.customer_id}", None, {}),
        ("PATCH", f"/v1/customers/{b.customer_id}", {"first_name": "Mallory"}, {}),
    ]
    for method, path, body, headers in attempts:
        response = await client.request(method, path, json=body, headers={**a.headers, **headers})
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
        assert response.json()["code"].endswith("not_found"), f"{method} {path}: {response.text}"

    # Naming B in a header does not switch A's owner into B.
    for path in (f"/v1/bookings/{b.booking_id}", f"/v1/venues/{b.tenant.venue_id}"):
        response = await client.get(path, headers={**a.headers, "X-Organization-Id": b.id})
        assert response.status_code == 404, f"{path} with X-Organization-Id: {response.text}"

    # An activity of A cannot be put on B's venue.
    response = await client.post("/v1/activities", headers=a.headers, json={
        "venue_id": b.tenant.venue_id, "name": "Cross", "duration_minutes": 60, "capacity": 4, "price_amount": 100})
    assert response.status_code in (404, 422) and response.json()["code"] == "venue_not_found", response.text

    # The widget of A's venue knows nothing of B's sessions and holds.
    base = f"/v1/public/venues/{a.tenant.embed_key}/reservations"
    response = await client.post(base, json={"session_id": b.session_id, "spots": 1, "customer_email": "x@example.com"})
    assert response.status_code == 404, response.text
    response = await client.post(f"{base}/{b.reservation_id}/checkout", json={
        "customer": {"email": b.customer_email, "first_name": "X", "last_name": "Y"}})
    assert response.status_code == 404, response.text
    response = await client.delete(f"{base}/{b.reservation_id}")
    assert response.status_code == 404, response.text

    assert fingerprint(owner, b.id) == before, "B's data changed"
    booking = (await client.get(f"/v1/bookings/{b.booking_id}", headers=b.headers)).json()
    assert booking["status"] == "confirmed" and booking["checked_in_at"] is None


async def test_lists_show_none_of_another_organizations_data(client, orgs):
    a, b = orgs
    checks = [
        ("/v1/venues", {"limit": 200}, b.tenant.venue_id),
        ("/v1/activities", {"limit": 200}, b.activity_id),
        ("/v1/bookings", {"limit": 200}, b.booking_id),
        ("/v1/customers", {"limit": 200}, b.customer_id),
    ]
    for path, params, b_id in checks:
        response = await client.get(path, headers=a.headers, params=params)
        assert response.status_code == 200, response.text
        ids = {item["id"] for item in response.json()["items"]}
        assert ids, f"{path} should list A's own objects"
        assert b_id not in ids, f"{path} lists B's {b_id}"
    filtered = [
        ("/v1/sessions", {"activity_id": b.activity_id}),
        ("/v1/sessions", {"venue_id": b.tenant.venue_id}),
        ("/v1/activities", {"venue_id": b.tenant.venue_id}),
        ("/v1/bookings", {"activity_id": b.activity_id}),
        ("/v1/bookings", {"venue_id": b.tenant.venue_id}),
        ("/v1/bookings", {"q": b.booking_reference}),
        ("/v1/bookings", {"q": b.customer_email}),
        ("/v1/customers", {"q": b.customer_email}),
    ]
    for path, params in filtered:
        response = await client.get(path, headers=a.headers, params=params)
        assert response.status_code == 200, response.text
        assert response.json()["items"] == [], f"{path} {params}: {response.text}"
    # ... while B's owner does find them.
    response = await client.get("/v1/bookings", headers=b.headers, params={"q": b.booking_reference})
    assert [item["id"] for item in response.json()["items"]] == [b.booking_id]


# ------------------------------------------------------------------------------------------------
# Authentication
# ------------------------------------------------------------------------------------------------
def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_missing_or_bad_tokens_get_401(client, orgs, settings):
    a, b = orgs
    good = a.tenant.token
    claims = _claims(good)
    header, _, signature = _segments(good)
    secret = settings.resolved_secret_key()
    now = int(time.time())
    bad_tokens = {
        "garbage": "not-a-jwt",
        "tampered payload (another organization)": ".".join([header, _b64({**claims, "org_id": b.id}), signature]),
        "tampered payload (higher role)": ".".join([header, _b64({**claims, "role": "system-admin",
                                                                  "is_platform": True}), signature]),
        "expired": jwt.encode({**claims, "iat": now - 7200, "exp": now - 60}, secret, algorithm="HS256"),
        "signed with another key": jwt.encode(claims, "some-other-secret-key-0123456789abcdef", algorithm="HS256"),
        "unsigned (alg none)": ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(claims), ""]),
        "not an access token": jwt.encode({**claims, "typ": "refresh"}, secret, algorithm="HS256"),
        "no expiry": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, secret, algorithm="HS256"),
    }
    for path in ("/v1/bookings", "/v1/me", f"/v1/bookings/{a.booking_id}"):
        response = await client.get(path)
        assert_problem(response, 401, "unauthorized", "invalid_token")
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
        response = await client.get(path, headers={"Authorization": f"Basic {base64.b64encode(b'a:b').decode()}"})
        assert_problem(response, 401, "unauthorized", "invalid_token")
        for label, token in bad_tokens.items():
            response = await client.get(path, headers=bearer(token))
            assert response.status_code == 401, f"{label} on {path}: {response.status_code} {response.text}"
            assert response.json()["code"] in ("unauthorized", "invalid_token"), response.text
    # The genuine token still works (so the 401s above were about the tokens).
    assert (await client.get(f"/v1/bookings/{a.booking_id}", headers=bearer(good))).status_code == 200


# ------------------------------------------------------------------------------------------------
# The permission matrix, endpoint by endpoint
# ------------------------------------------------------------------------------------------------
Send = Callable[[httpx.AsyncClient, Org, dict[str, str]], Awaitable[httpx.Response]]


@dataclass
class Probe:
    """A representative request needing one permission, and the status it gets when allowed."""
    send: Send
    ok: int = 200


async def _fresh_booking(client: httpx.AsyncClient, org: Org) -> str:
    return (await book(client, org.tenant, org.session_id, spots=1, email=f"{unique('g')}@example.com"))["id"]


async def _patch_session(client, org, headers):
    current = await client.get(f"/v1/sessions/{org.session_id}", headers=org.headers)
    return await client.patch(f"/v1/sessions/{org.session_id}", json={"is_closed": False},
                              headers={**headers, "If-Match": current.headers["etag"]})


async def _check_in(client, org, headers):
    booking_id = await _fresh_booking(client, org)
    return await client.post(f"/v1/bookings/{booking_id}/check-in", headers=headers)


async def _cancel(client, org, headers):
    booking_id = await _fresh_booking(client, org)
    return await client.post(f"/v1/bookings/{booking_id}/cancel", headers=headers, json={"refund": "none"})


PROBES: dict[str, Probe] = {
    "venues.view": Probe(lambda c, o, h: c.get(f"/v1/venues/{o.tenant.venue_id}", headers=h)),
    "venues.manage": Probe(lambda c, o, h: c.patch(f"/v1/venues/{o.tenant.venue_id}", headers=h,
                                                   json={"address": f"{unique('street')} 1"})),
    "activities.view": Probe(lambda c, o, h: c.get(f"/v1/activities/{o.activity_id}", headers=h)),
    "activities.manage": Probe(lambda c, o, h: c.patch(f"/v1/activities/{o.activity_id}", headers=h,
                                                       json={"description": unique("described")})),
    "sessions.view": Probe(lambda c, o, h: c.get(f"/v1/sessions/{o.session_id}", headers=h)),
    "sessions.manage": Probe(_patch_session),
    "bookings.view": Probe(lambda c, o, h: c.get(f"/v1/bookings/{o.booking_id}", headers=h)),
    "bookings.create": Probe(lambda c, o, h: c.post("/v1/bookings", headers=h, json={
        "session_id": o.session_id, "guest_count": 1,
        "customer": {"email": f"{unique('walkin')}@example.com", "first_name": "Walk", "last_name": "In"}}), ok=201),
    "bookings.cancel": Probe(_cancel),
    "bookings.checkin": Probe(_check_in),
    "customers.view": Probe(lambda c, o, h: c.get(f"/v1/customers/{o.customer_id}", headers=h)),
    "customers.manage": Probe(lambda c, o, h: c.patch(f"/v1/customers/{o.customer_id}", headers=h,
                                                      json={"first_name": unique("Name")[:20]})),
    "api_keys.manage": Probe(lambda c, o, h: c.get("/v1/api-keys", headers=h)),
    "organization.view": Probe(lambda c, o, h: c.get("/v1/organization/settings", headers=h)),
    "organization.manage": Probe(lambda c, o, h: c.patch("/v1/organization/settings", headers=h,
                                                         json={"require_mfa_for": []})),
    "users.view": Probe(lambda c, o, h: c.get("/v1/users", headers=h)),
    "users.manage": Probe(lambda c, o, h: c.post("/v1/users", headers=h, json={
        "email": f"{unique('invitee')}@example.com", "full_name": "Invited Staff", "role": "staff"}), ok=201),
    "audit.view": Probe(lambda c, o, h: c.get("/v1/audit-log", headers=h)),
    "stats.view": Probe(lambda c, o, h: c.get("/v1/dashboard/stats", headers=h)),
    "promo_codes.manage": Probe(lambda c, o, h: c.post("/v1/promo-codes", headers=h, json={
        "code": unique("PROBE")[:30], "discount_type": "percent", "discount_value": 10}), ok=201),
}


def _guarded(route: APIRoute) -> bool:
    return any(getattr(d.call, "__qualname__", "").startswith("require.<locals>") for d in route.dependant.dependencies)


def permissions_with_endpoints(app) -> dict[str, list[str]]:
    """permission -> the routes whose `require(permission)` dependency asks for it."""
    found: dict[str, list[str]] = {}

    def walk(dependant, route):
        for dep in dependant.dependencies:
            call = dep.call
            if getattr(call, "__qualname__", "").startswith("require.<locals>"):
                permission = inspect.getclosurevars(call).nonlocals["permission"]
                found.setdefault(permission, []).append(f"{','.join(sorted(route.methods))} {route.path}")
            walk(dep, route)

    for route in api_routes(app.routes):
        walk(route.dependant, route)
    return found


def test_every_permission_with_an_endpoint_has_a_probe(app):
    """Keeps this file in step with the matrix and the routers: a new permission-guarded endpoint
    needs a probe below, and every permission an endpoint asks for is in the matrix."""
    used = permissions_with_endpoints(app)
    assert set(used) <= set(PERMISSION_MATRIX), f"endpoints ask for unknown permissions: {set(used) - set(PERMISSION_MATRIX)}"
    assert set(used) == set(PROBES), f"no probe for {set(used) - set(PROBES)}; stale probes {set(PROBES) - set(used)}"


@pytest.fixture(scope="module")
async def role_tokens(client, orgs) -> dict[str, str]:
    a, _ = orgs
    return {role: await add_staff(client, a.tenant, role) for role in ORG_ROLES}


@pytest.mark.parametrize("role", ORG_ROLES)
@pytest.mark.parametrize("permission", sorted(PERMISSION_MATRIX))
async def test_role_may_do_exactly_what_the_matrix_says(client, orgs, role_tokens, owner, app, role, permission):
    a, _ = orgs
    allowed = ROLE_RANK[role] >= ROLE_RANK[PERMISSION_MATRIX[permission]]
    headers = bearer(role_tokens[role])
    if permission not in PROBES:
        # No endpoint asks for it yet (the guard test above says so): what the role is told it holds.
        assert permission not in permissions_with_endpoints(app)
        me = await client.get("/v1/me", headers=headers)
        assert me.status_code == 200 and me.json()["role"] == role
        assert (permission in me.json()["permissions"]) is allowed
        return
    probe = PROBES[permission]
    if allowed:
        response = await probe.send(client, a, headers)
        assert response.status_code == probe.ok, f"{role} should be able to use {permission}: {response.text}"
        return
    # Denied: the request is refused and changes nothing. (Probes that need a fresh booking make it
    # first, with the owner; the fingerprint is taken just before the refused request.)
    recorded: dict[str, Any] = {}
    real_send = probe.send

    async def send_and_record(c, o, h):
        return await real_send(_Recorder(c, owner, o.id, recorded), o, h)

    response = await send_and_record(client, a, headers)
    assert_problem(response, 403, "permission_denied")
    assert response.json().get("permission") == permission, response.text
    assert fingerprint(owner, a.id) == recorded["before"], f"a refused {permission} changed data"


class _Recorder:
    """Passes requests through to the client; fingerprints the organization's data right before the
    request sent with the role's token (the last one), so setup requests made with the owner's token
    do not count as changes."""

    def __init__(self, client: httpx.AsyncClient, owner, org_id: str, recorded: dict[str, Any]):
        self._client, self._owner, self._org_id, self._recorded = client, owner, org_id, recorded

    async def request(self, method, url, **kwargs):
        self._recorded["before"] = fingerprint(self._owner, self._org_id)
        return await self._client.request(method, url, **kwargs)

    async def get(self, url, **kwargs):
        return await self.request("GET", url, **kwargs)

    async def post(self, url, **kwargs):
        return await self.request("POST", url, **kwargs)

    async def patch(self, url, **kwargs):
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url, **kwargs):
        return await self.request("DELETE", url, **kwargs)


async def test_me_lists_the_roles_permissions(client, orgs, role_tokens):
    for role in ORG_ROLES:
        me = await client.get("/v1/me", headers=bearer(role_tokens[role]))
        assert me.status_code == 200, me.text
        expected = sorted(p for p, lowest in PERMISSION_MATRIX.items() if ROLE_RANK[role] >= ROLE_RANK[lowest])
        assert sorted(me.json()["permissions"]) == expected == sorted(permissions_for(role))
        assert me.json()["organization_id"] == orgs[0].id


# ------------------------------------------------------------------------------------------------
# Platform versus organizations
# ------------------------------------------------------------------------------------------------
def _concrete(path: str) -> str:
    """A route path with its parameters filled in (ids of nothing, a well-formed reference)."""
    return re.sub(r"\{([^}]+)\}", lambda m: "ABCDE-FGHJK" if m.group(1) == "reference" else str(uuid.uuid4()), path)


async def test_platform_admin_gets_organization_required_on_organization_endpoints(client, app, platform_admin, orgs):
    routes = [(method, route.path) for route in api_routes(app.routes) if _guarded(route)
              for method in route.methods]
    assert len(routes) >= len(PROBES)
    for method, path in routes:
        response = await client.request(method, _concrete(path), headers=platform_admin.headers,
                                        json={} if method in ("POST", "PATCH") else None)
        assert_problem(response, 403, "organization_required")
    # Nor does naming an organization's objects, or the organization itself without an access grant.
    a, _ = orgs
    response = await client.get(f"/v1/bookings/{a.booking_id}", headers=platform_admin.headers)
    assert_problem(response, 403, "organization_required")
    response = await client.get(f"/v1/bookings/{a.booking_id}",
                                headers={**platform_admin.headers, "X-Organization-Id": a.id})
    assert response.status_code in (403, 404), response.text


async def test_organization_owner_gets_403_on_platform_endpoints(client, orgs, owner):
    a, _ = orgs
    slug = unique("sneaky")
    attempts = [
        ("GET", "/v1/platform/organizations", None),
        ("GET", f"/v1/platform/organizations/{a.id}", None),
        ("POST", "/v1/platform/organizations", {"name": "Sneaky", "slug": slug, "plan": "free",
                                                "owner": {"email": f"{slug}@example.com", "full_name": "S",
                                                          "password": PASSWORD}}),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, headers=a.headers, json=body)
        assert_problem(response, 403, "permission_denied")
    assert org_with_slug(owner, slug) == 0


# ------------------------------------------------------------------------------------------------
# Onboarding an organization
# ------------------------------------------------------------------------------------------------
async def test_platform_creates_organization_with_default_venue_and_owner(client, platform_admin, owner):
    slug = unique("onboard")
    email = f"Boss@{slug}.Example.com"
    response = await client.post("/v1/platform/organizations", headers=platform_admin.headers, json={
        "name": "Onboarded Escape Rooms", "slug": slug, "plan": "pro", "timezone": "Europe/Berlin",
        "owner": {"email": email, "full_name": "The Boss", "password": PASSWORD}})
    assert response.status_code == 201, response.text
    body = response.json()
    org, venue, new_owner = body["organization"], body["venue"], body["owner"]
    assert org["slug"] == slug and org["name"] == "Onboarded Escape Rooms"
    assert venue["timezone"] == "Europe/Berlin"
    assert isinstance(venue["embed_key"], str) and len(venue["embed_key"]) >= 16
    assert new_owner["email"] == email.lower() and new_owner["id"]
    # The shapes the platform's and the organization's own reads answer.
    shown = (await client.get(f"/v1/platform/organizations/{org['id']}", headers=platform_admin.headers)).json()
    assert org == shown and org["plan"] == "pro" and org["owner_id"] == new_owner["id"] and org["venues_count"] == 1
    assert "calendar_token_hash" not in venue and venue["calendar_feed_enabled"] is False

    with owner.connect() as conn:
        stored = conn.execute(text(
            "SELECT o.owner_id::text, p.slug AS plan, o.status, "
            "(SELECT count(*) FROM venues v WHERE v.organization_id = o.id) AS venues, "
            "(SELECT role FROM users u WHERE u.id = o.owner_id AND u.organization_id = o.id) AS owner_role "
            "FROM organizations o JOIN plans p ON p.id = o.plan_id WHERE o.id = :o"), {"o": org["id"]}).one()
    assert stored.owner_id == new_owner["id"] and stored.plan == "pro" and stored.status == "active"
    assert stored.venues == 1 and stored.owner_role == "super-admin"

    token = await login(client, email)
    me = await client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "super-admin" and me.json()["organization_id"] == org["id"]
    assert me.json()["email"] == email.lower()
    assert sorted(me.json()["permissions"]) == sorted(PERMISSION_MATRIX)
    venues = await client.get("/v1/venues", headers=bearer(token))
    assert [v["id"] for v in venues.json()["items"]] == [venue["id"]]
    public = await client.get(f"/v1/public/venues/{venue['embed_key']}")
    assert public.status_code == 200 and public.json()["venue"]["timezone"] == "Europe/Berlin"


async def test_a_bad_organization_request_writes_nothing(client, platform_admin, orgs, owner):
    a, _ = orgs
    taken_email = a.tenant.owner_email

    def body(slug: str, **changes) -> dict:
        owner_in = {"email": f"owner@{slug}.example.com", "full_name": "Owner", "password": PASSWORD}
        owner_in.update(changes.pop("owner", {}))
        return {"name": f"Org {slug}", "slug": slug, "plan": "free", "timezone": "America/Chicago",
                "owner": owner_in, **changes}

    cases = [
        ("duplicate owner email", {"owner": {"email": taken_email}}, 409, "email_taken"),
        ("duplicate owner email, other case", {"owner": {"email": taken_email.upper()}}, 409, "email_taken"),
        ("unknown plan", {"plan": "platinum-deluxe"}, 422, "unknown_plan"),
        ("weak password", {"owner": {"password": "short"}}, 422, "weak_password"),
        ("unknown time zone", {"timezone": "Mars/Olympus_Mons"}, 422, None),
    ]
    with owner.connect() as conn:
        users_before = conn.execute(text("SELECT count(*) FROM users")).scalar()
        outbox_before = conn.execute(text("SELECT count(*) FROM notification_outbox")).scalar()
    for label, changes, status, code in cases:
        slug = unique("bad")
        response = await client.post("/v1/platform/organizations", headers=platform_admin.headers,
                                     json=body(slug, **changes))
        assert response.status_code == status, f"{label}: {response.text}"
        if code:
            assert response.json()["code"] == code, f"{label}: {response.text}"
        assert org_with_slug(owner, slug) == 0, f"{label}: an organization was written"
    with owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == users_before
        assert conn.execute(text("SELECT count(*) FROM notification_outbox")).scalar() == outbox_before
        assert conn.execute(text("SELECT count(*) FROM users WHERE email = :e"), {"e": taken_email}).scalar() == 1

    # A taken slug is refused too, and the organization holding it is left alone.
    with owner.connect() as conn:
        a_slug, a_name = conn.execute(text("SELECT slug, name FROM organizations WHERE id = :o"), {"o": a.id}).one()
    response = await client.post("/v1/platform/organizations", headers=platform_admin.headers,
                                 json=body(a_slug, owner={"email": f"{unique('x')}@example.com"}))
    assert_problem(response, 409, "slug_taken")
    with owner.connect() as conn:
        assert conn.execute(text("SELECT name FROM organizations WHERE slug = :s"), {"s": a_slug}).scalar() == a_name
