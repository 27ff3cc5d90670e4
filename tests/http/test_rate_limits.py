"""Rate limits (PRD 3.2.1) on real server processes sharing the test Redis.

The suite runs with BOOKINGTMS_RATE_LIMITS=0 (conftest); these servers turn limiting on with
small limits, and trust 127.0.0.1 as a proxy so each test speaks from its own fresh client
addresses (X-Forwarded-For) and never shares a budget with another test or run."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time

import httpx
import jwt
import pytest

from tests.conftest import LiveServer
from tests.factories import add_staff, bearer

PUBLIC, AUTHENTICATED, ADMIN, WEBHOOK = 5, 8, 11, 14
LIMITED_ENV = {
    "BOOKINGTMS_RATE_LIMITS": "1",
    "BOOKINGTMS_RATE_LIMIT_PUBLIC": f"{PUBLIC}/minute",
    "BOOKINGTMS_RATE_LIMIT_AUTHENTICATED": f"{AUTHENTICATED}/minute",
    "BOOKINGTMS_RATE_LIMIT_ADMIN": f"{ADMIN}/minute",
    "BOOKINGTMS_RATE_LIMIT_WEBHOOK": f"{WEBHOOK}/minute",
    "BOOKINGTMS_TRUSTED_PROXIES": "127.0.0.1",
}


def fresh_ip() -> str:
    """An address in the IPv6 documentation range no other test uses."""
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | random.getrandbits(64)))


def from_ip(ip: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **(headers or {})}


@pytest.fixture(scope="module")
def servers():
    """Two independent server processes with limiting on, sharing the database and Redis."""
    first = LiveServer(LIMITED_ENV)
    try:
        second = LiveServer(LIMITED_ENV)
    except Exception:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=15) as c:
        yield c


def assert_refused(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == "0"
    assert 0 <= int(response.headers["RateLimit-Reset"]) <= 60


async def test_public_limit_holds_across_two_server_processes(servers, tenant, http):
    first, second = servers
    ip = fresh_ip()
    path = f"/v1/public/venues/{tenant.embed_key}"
    # A burst of 16 concurrent requests spread over both processes: exactly the limit is served.
    burst = await asyncio.gather(*(http.get(servers[i % 2].url + path, headers=from_ip(ip)) for i in range(16)))
    statuses = sorted(r.status_code for r in burst)
    assert statuses == [200] * PUBLIC + [429] * (16 - PUBLIC)
    for response in burst:
        assert response.headers["RateLimit-Limit"] == str(PUBLIC)
    served_remaining = sorted(int(r.headers["RateLimit-Remaining"]) for r in burst if r.status_code == 200)
    assert served_remaining[-1] <= PUBLIC - 1
    # Both processes keep refusing that address, with Retry-After and RateLimit-* headers.
    for server in (first, second):
        assert_refused(await http.get(server.url + path, headers=from_ip(ip)), PUBLIC)
    # Another address has its own, untouched budget.
    other = await http.get(second.url + path, headers=from_ip(fresh_ip()))
    assert other.status_code == 200
    assert other.headers["RateLimit-Remaining"] == str(PUBLIC - 1)
    assert other.headers["RateLimit-Policy"] == f"{PUBLIC};w=60"


async def test_sequential_requests_count_down_over_both_processes(servers, tenant, http):
    ip = fresh_ip()
    path = f"/v1/public/venues/{tenant.embed_key}"
    for i in range(PUBLIC):
        response = await http.get(servers[i % 2].url + path, headers=from_ip(ip))
        assert response.status_code == 200
        assert response.headers["RateLimit-Remaining"] == str(PUBLIC - 1 - i)
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 60
    refused = await http.get(servers[1].url + path, headers=from_ip(ip, {"Origin": "https://shop.example.com"}))
    assert_refused(refused, PUBLIC)
    # The widget, on another site, can read the refusal and when to retry.
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    assert "retry-after" in refused.headers["Access-Control-Expose-Headers"].lower()


async def test_authenticated_budget_is_per_user_whatever_the_address(servers, client, tenant, http):
    colleague = await add_staff(client, tenant, "staff")
    url = servers[0].url + "/v1/venues"
    for i in range(AUTHENTICATED):  # one user from ever-changing addresses, over both processes
        response = await http.get(servers[i % 2].url + "/v1/venues", headers=from_ip(fresh_ip(), tenant.headers))
        assert response.status_code == 200, response.text
        assert response.headers["RateLimit-Limit"] == str(AUTHENTICATED)
        assert response.headers["RateLimit-Remaining"] == str(AUTHENTICATED - 1 - i)
    ip = fresh_ip()
    assert_refused(await http.get(url, headers=from_ip(ip, tenant.headers)), AUTHENTICATED)
    # A colleague at the same address, and that address's anonymous budget, are untouched.
    other = await http.get(url, headers=from_ip(ip, bearer(colleague)))
    assert other.status_code == 200
    assert other.headers["RateLimit-Remaining"] == str(AUTHENTICATED - 1)
    anonymous = await http.get(f"{servers[1].url}/v1/public/venues/{tenant.embed_key}", headers=from_ip(ip))
    assert anonymous.status_code == 200
    assert anonymous.headers["RateLimit-Limit"] == str(PUBLIC)
    assert anonymous.headers["RateLimit-Remaining"] == str(PUBLIC - 1)


async def test_platform_admins_get_the_admin_budget(servers, platform_admin, http):
    response = await http.get(servers[0].url + "/v1/me", headers=from_ip(fresh_ip(), platform_admin.headers))
    assert response.status_code == 200
    assert response.headers["RateLimit-Limit"] == str(ADMIN)


async def test_api_key_budget_is_per_key_and_a_wrong_secret_does_not_drain_it(servers, client, tenant, http):
    created = await client.post("/v1/api-keys", headers=tenant.headers,
                                json={"name": "integration", "permissions": ["venues.view"]})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    prefix = created.json()["prefix"]
    url = servers[0].url + "/v1/venues"
    # Someone who knows the (visible) prefix but not the secret is counted as an anonymous address.
    attacker = fresh_ip()
    forged = f"btms_{prefix}_{'A' * 43}"
    for _ in range(PUBLIC):
        response = await http.get(url, headers=from_ip(attacker, bearer(forged)))
        assert response.status_code == 401
        assert response.headers["RateLimit-Limit"] == str(PUBLIC)
    assert_refused(await http.get(url, headers=from_ip(attacker, bearer(forged))), PUBLIC)
    # The real key, even from that address, still has its whole budget, shared by both processes.
    for i in range(AUTHENTICATED):
        response = await http.get(servers[i % 2].url + "/v1/venues", headers=from_ip(attacker, bearer(secret)))
        assert response.status_code == 200, response.text
        assert response.headers["RateLimit-Limit"] == str(AUTHENTICATED)
        assert response.headers["RateLimit-Remaining"] == str(AUTHENTICATED - 1 - i)
    assert_refused(await http.get(url, headers=from_ip(fresh_ip(), bearer(secret))), AUTHENTICATED)
    # The organization's users are counted separately from its key.
    owner = await http.get(url, headers=from_ip(fresh_ip(), tenant.headers))
    assert owner.status_code == 200


async def test_a_forged_token_does_not_consume_the_victims_budget(servers, tenant, http):
    claims = jwt.decode(tenant.token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "exp": int(time.time()) + 600}, "not-our-key-but-long-enough-for-hs256-0123456789",
                        algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    url = servers[1].url + "/v1/venues"
    attacker = fresh_ip()
    for token in [forged, unsigned] * 2 + [forged]:
        response = await http.get(url, headers=from_ip(attacker, bearer(token)))
        assert response.status_code == 401
        assert response.headers["RateLimit-Limit"] == str(PUBLIC)
    assert_refused(await http.get(url, headers=from_ip(attacker, bearer(forged))), PUBLIC)
    victim = await http.get(url, headers=from_ip(fresh_ip(), tenant.headers))
    assert victim.status_code == 200
    assert victim.headers["RateLimit-Remaining"] == str(AUTHENTICATED - 1)


async def test_webhooks_have_their_own_budget_and_operations_endpoints_none(servers, tenant, http):
    ip = fresh_ip()
    base = servers[0].url
    for _ in range(PUBLIC):
        await http.get(f"{base}/v1/public/venues/no-such-key", headers=from_ip(ip))
    assert_refused(await http.get(f"{base}/v1/public/venues/{tenant.embed_key}", headers=from_ip(ip)), PUBLIC)
    # Refused on the widget budget, the address still reaches webhooks and operations endpoints.
    webhook = await http.post(f"{base}/v1/webhooks/stripe", headers=from_ip(ip), content=b"{}")
    assert webhook.status_code != 429
    assert webhook.headers["RateLimit-Limit"] == str(WEBHOOK)
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        response = await http.get(base + path, headers=from_ip(ip))
        assert response.status_code == 200, path
        assert "RateLimit-Limit" not in response.headers, path


async def test_limits_off(live_server_factory, tenant, http):
    server = live_server_factory({**LIMITED_ENV, "BOOKINGTMS_RATE_LIMITS": "0",
                                  "BOOKINGTMS_RATE_LIMIT_PUBLIC": "2/minute"})
    ip = fresh_ip()
    for _ in range(6):
        response = await http.get(f"{server.url}/v1/public/venues/{tenant.embed_key}", headers=from_ip(ip))
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response.headers


async def test_pages_count_per_signed_in_user_files_not_at_all_and_refusals_are_readable(servers, tenant, http):
    from tests.factories import PASSWORD
    from tests.pages.helpers import PageClient

    ip = fresh_ip()
    base = servers[0].url
    # Staff behind one front-desk address: a signed-in page counts against its user, not the address.
    async with PageClient(base_url=base) as owner:
        owner.http.headers["X-Forwarded-For"] = ip
        await owner.sign_in(tenant.owner_email, PASSWORD)
        for _ in range(PUBLIC + 2):  # past the address's widget budget, within the user's
            page = await owner.get("/admin/customers")
            assert page.status_code == 200, page.status_code
            assert page.headers["RateLimit-Limit"] == str(AUTHENTICATED)
    # Files are never counted: the pages' CSS/JS, the loader, pictures.
    for path in ("/static/css/app.css", "/widget.js") * (PUBLIC + 1):
        response = await http.get(base + path, headers=from_ip(ip))
        assert response.status_code == 200 and "RateLimit-Limit" not in response.headers, path
    # Anonymous pages share the address's public budget; a refusal there is a page, not JSON.
    other = fresh_ip()
    for _ in range(PUBLIC):
        await http.get(f"{base}/widget/{tenant.embed_key}", headers=from_ip(other))
    refused = await http.get(f"{base}/widget/{tenant.embed_key}", headers=from_ip(other))
    assert refused.status_code == 429 and refused.headers["content-type"].startswith("text/html")
    assert "Too many requests" in refused.text and int(refused.headers["Retry-After"]) >= 1


def test_an_untrusted_peer_cannot_pick_its_address(live_server_factory):
    """Without BOOKINGTMS_TRUSTED_PROXIES no X-Forwarded-For is believed, not even from loopback
    (the server's own HTTP layer does not rewrite the peer either): a caller sending a new address
    each time is still counted as itself."""
    server = live_server_factory({"BOOKINGTMS_RATE_LIMITS": "1", "BOOKINGTMS_RATE_LIMIT_PUBLIC": "4 per 7 minutes"})
    with httpx.Client(base_url=server.url, timeout=15) as client:
        statuses = [client.get("/v1/public/venues/no-such-venue/availability",
                               headers=from_ip(fresh_ip())).status_code for _ in range(6)]
    assert statuses == [404] * 4 + [429] * 2
