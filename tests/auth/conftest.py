"""Helpers for the sign-in tests: clients that come from an address of their own (sign-in
throttling and rate limits count per address, and these tests must neither trip over nor use up
127.0.0.1's budget shared by the rest of the suite), staff accounts with a known password, and
the loopback OpenID provider."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

import httpx
import pyotp
import pytest
from sqlalchemy import text

from bookingtms.auth.passwords import hash_password
from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.models import users
from tests.auth.oidc_provider import OpenIDProvider
from tests.factories import PASSWORD, Tenant, bearer, unique

CLIENT_ID = "bookingtms-test-client"
CLIENT_SECRET = "provider-secret-for-tests-only"
CALLBACK = "http://testserver/v1/auth/oidc/callback"


def new_address() -> str:
    """A client address no other test uses (TEST-NET and 10/8 ranges, random)."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@pytest.fixture
async def client_from(app):
    """client_from(address=None) -> an in-process client whose requests come from `address`."""
    made: list[httpx.AsyncClient] = []

    def make(address: str | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address or new_address(), 40000))
        c = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        made.append(c)
        return c

    yield make
    for c in made:
        await c.aclose()


@pytest.fixture
async def api(client_from) -> httpx.AsyncClient:
    """This test's own client, from an address of its own."""
    return client_from()


@pytest.fixture
def throttling(settings, monkeypatch):
    """Sign-in throttling on, as in production (the suite runs with BOOKINGTMS_RATE_LIMITS=0, which
    turns it off along with the request rate limits)."""
    monkeypatch.setattr(settings, "rate_limits", True)


@dataclass
class Staff:
    id: str
    email: str
    role: str
    organization_id: str
    password: str = PASSWORD


async def make_staff(tenant: Tenant, role: str = "manager", *, email: str | None = None,
                     must_change_password: bool = False) -> Staff:
    email = email or f"{unique(role)}@o{tenant.organization_id[:8]}.example.com"
    org_id = uuid.UUID(tenant.organization_id)
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        user_id = (await db.execute(users.insert().values(
            organization_id=org_id, email=email, full_name=role.title(), role=role,
            password_hash=hash_password(PASSWORD), must_change_password=must_change_password,
        ).returning(users.c.id))).scalar_one()
    return Staff(id=str(user_id), email=email, role=role, organization_id=tenant.organization_id)


async def sign_in(api: httpx.AsyncClient, email: str, password: str = PASSWORD, otp: str | None = None) -> dict:
    body = {"email": email, "password": password} | ({"otp": otp} if otp else {})
    response = await api.post("/v1/auth/login", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def enrol_totp(api: httpx.AsyncClient, access_token: str,
                     used: set[str] | None = None) -> tuple[pyotp.TOTP, dict]:
    """Enrols and confirms TOTP; returns the authenticator and the confirmation's answer (the code
    it used goes into `used`)."""
    started = await api.post("/v1/auth/mfa/totp", headers=bearer(access_token))
    assert started.status_code == 201, started.text
    totp = pyotp.TOTP(started.json()["secret"])
    code = totp.now()
    if used is not None:
        used.add(code)
    confirmed = await api.post("/v1/auth/mfa/totp/confirm", headers=bearer(access_token), json={"otp": code})
    assert confirmed.status_code == 200, confirmed.text
    return totp, confirmed.json()


def valid_codes(totp: pyotp.TOTP) -> set[str]:
    """Every code the server could accept around now (one step either side, plus slack)."""
    now = time.time()
    return {totp.at(now + d) for d in (-60, -30, 0, 30, 60)}


def unused_code(totp: pyotp.TOTP, used: set[str]) -> str:
    """A code good now (this step or a neighbour) that this test has not used yet (the server
    takes each code once). The next step's code comes before the last step's: the server may see
    the request a step later (a slow password hash), when the last step's code is no longer good."""
    now = time.time()
    for at in (now, now + 30, now - 30):
        code = totp.at(at)
        if code not in used:
            used.add(code)
            return code
    raise AssertionError("no unused code left in the window")


def problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, f"expected {status} {code}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["code"] == code, body
    return body


def audit_actions(owner_engine, user_id: str) -> list[tuple[str, dict]]:
    with owner_engine.connect() as conn:
        rows = conn.execute(text("SELECT action, changes FROM audit_log WHERE target_id = :t ORDER BY id"),
                            {"t": str(user_id)}).all()
    return [(r.action, r.changes) for r in rows]


@pytest.fixture(scope="session")
def oidc_provider():
    provider = OpenIDProvider(CLIENT_ID, CLIENT_SECRET, CALLBACK).start()
    yield provider
    provider.stop()


@pytest.fixture
def oidc(oidc_provider, settings, monkeypatch):
    """The app configured (OIDC_* settings) for the loopback provider, for this test only."""
    monkeypatch.setattr(settings, "oidc_issuer", oidc_provider.issuer)
    monkeypatch.setattr(settings, "oidc_client_id", CLIENT_ID)
    monkeypatch.setattr(settings, "oidc_client_secret", CLIENT_SECRET)
    monkeypatch.setattr(settings, "oidc_redirect_uri", CALLBACK)
    oidc_provider.reset()
    yield oidc_provider
    oidc_provider.reset()
