"""Security headers of blueprint 7.2 on every response; framing and CORS only for the widget."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

BASE = {
    "x-content-type-options": "nosniff",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "referrer-policy": "strict-origin-when-cross-origin",
}
ORIGIN = "https://escape-rooms.example.com"


def directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] if " " in d else "" for d in (p.strip() for p in policy.split(";"))}


def assert_base_headers(response: httpx.Response) -> None:
    for name, value in BASE.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    csp = directives(response)
    assert csp["default-src"] in ("'self'", "'none'")
    assert csp["object-src"] == "'none'"
    assert csp["base-uri"] == "'none'"
    assert "'unsafe-eval'" not in response.headers["content-security-policy"]


def assert_not_framable(response: httpx.Response) -> None:
    assert response.headers.get("x-frame-options") == "DENY"
    assert directives(response)["frame-ancestors"] == "'none'"


def assert_framable(response: httpx.Response) -> None:
    assert "x-frame-options" not in response.headers
    assert directives(response)["frame-ancestors"] == "*"


async def test_every_kind_of_response_carries_the_headers_and_refuses_framing(client, tenant):
    responses = [
        await client.get("/healthz"),  # 200
        await client.get("/v1/venues", headers=tenant.headers),  # 200 JSON
        await client.get("/v1/venues"),  # 401
        await client.get("/v1/no-such-thing"),  # 404
        await client.post("/healthz"),  # 405
        await client.post("/v1/venues", headers={**tenant.headers, "Content-Type": "application/json"},
                          content=b"{not json"),  # 400
        await client.post("/v1/venues", headers=tenant.headers, json={"name": ""}),  # 422
        await client.get("/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 401, 404, 405, 400, 422, 200]
    for response in responses:
        assert_base_headers(response)
        assert_not_framable(response)
        csp = directives(response)
        assert csp["default-src"] == "'self'" and csp["script-src"] == "'self'"


async def test_an_unexpected_server_error_carries_the_headers_too():
    from bookingtms.app import create_app

    app = create_app()

    @app.get("/boom")
    async def boom():
        raise RuntimeError("kaboom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        response = await c.get("/boom")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert_base_headers(response)
    assert_not_framable(response)


async def test_widget_paths_and_the_public_api_may_be_framed_by_any_site(client, tenant):
    public = await client.get(f"/v1/public/venues/{tenant.embed_key}")
    missing = await client.get("/v1/public/venues/no-such-key")
    assert (public.status_code, missing.status_code) == (200, 404)
    for response in (public, missing, await client.get(f"/widget/{tenant.embed_key}"), await client.get("/widget.js")):
        assert_base_headers(response)
        assert_framable(response)
    # Only those: a look-alike path is not.
    assert_not_framable(await client.get("/widgets"))
    assert_not_framable(await client.get("/v1/publicity"))


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_docs_pages_allow_exactly_their_cdn_and_their_own_inline_scripts(client, path):
    response = await client.get(path)
    assert response.status_code == 200
    assert_base_headers(response)
    assert_not_framable(response)
    csp = directives(response)
    assert csp["default-src"] == "'none'"
    script_sources = csp["script-src"].split()
    assert "'unsafe-inline'" not in script_sources
    assert "https://cdn.jsdelivr.net" in script_sources
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", response.text, re.DOTALL)
    hashes = {f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline}
    assert set(script_sources) == {"https://cdn.jsdelivr.net"} | hashes
    for src in re.findall(r'<script[^>]*\bsrc="([^"]+)"', response.text):
        assert src.startswith("https://cdn.jsdelivr.net/"), src
    assert csp["connect-src"] == "'self'"
    # Nowhere else is the CDN allowed.
    assert "cdn.jsdelivr.net" not in (await client.get("/openapi.json")).headers["content-security-policy"]


async def test_public_endpoints_answer_cross_origin_requests_and_preflights(client, tenant):
    preflight = await client.options(f"/v1/public/venues/{tenant.embed_key}/reservations", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, idempotency-key"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "DELETE" in preflight.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "idempotency-key"} <= allowed
    assert "access-control-allow-credentials" not in preflight.headers
    assert_base_headers(preflight)

    response = await client.get(f"/v1/public/venues/{tenant.embed_key}", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "x-request-id"} <= exposed

    # Credentials are not for the widget: a preflight asking to send Authorization is refused.
    with_auth = await client.options(f"/v1/public/venues/{tenant.embed_key}", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert with_auth.status_code == 400


async def test_no_other_path_is_open_cross_origin(client, tenant):
    preflight = await client.options("/v1/venues", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code >= 400
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    response = await client.get("/v1/venues", headers={"Origin": ORIGIN, **tenant.headers})
    assert response.status_code == 200
    assert not any(name.startswith("access-control-") for name in response.headers)
    login = await client.options("/v1/auth/login", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert login.status_code >= 400
    assert "access-control-allow-origin" not in login.headers
