"""When Redis cannot answer, rate limiting fails open: requests are served (unlimited) and a
warning is logged, and the outage costs one timeout, not one per request."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bookingtms.config import get_settings
from bookingtms.http import ratelimit
from tests.http.test_rate_limits import fresh_ip


class Warnings:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def warning(self, event, **fields):
        self.events.append((event, fields))


def limited_app(redis_url: str | None, public: str = "2/minute") -> ratelimit.RateLimitMiddleware:
    async def hello(request):
        return PlainTextResponse("hello")

    inner = Starlette(routes=[Route("/v1/public/hello", hello)])
    return ratelimit.RateLimitMiddleware(inner, enabled=True, redis_url=redis_url,
                                         limits=ratelimit.resolve_limits(get_settings(), {"public": public}))


@pytest.fixture
def silent_redis():
    """A TCP port that accepts connections and never answers: a hung Redis."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


async def test_a_hung_redis_fails_open_after_one_timeout(silent_redis, monkeypatch):
    warnings = Warnings()
    monkeypatch.setattr(ratelimit, "log", warnings)
    skipped_before = REGISTRY.get_sample_value("bookingtms_rate_limits_skipped_total")
    app = limited_app(silent_redis)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        started = time.perf_counter()
        first = await c.get("/v1/public/hello")
        first_took = time.perf_counter() - started
        started = time.perf_counter()
        rest = [await c.get("/v1/public/hello") for _ in range(5)]
        rest_took = time.perf_counter() - started
    assert [r.status_code for r in [first, *rest]] == [200] * 6  # more than the limit of 2, all served
    assert all("ratelimit-limit" not in r.headers for r in [first, *rest])
    assert first_took < 3 * ratelimit.REDIS_TIMEOUT_SECONDS + 1
    assert rest_took < ratelimit.REDIS_TIMEOUT_SECONDS  # Redis left alone during the back-off
    assert [event for event, _ in warnings.events] == ["rate_limits_unavailable"]
    # Each request served unlimited is counted, for /metrics and the benchmark's report.
    assert REGISTRY.get_sample_value("bookingtms_rate_limits_skipped_total") == skipped_before + 6


async def test_an_unreachable_redis_fails_open_while_the_same_limits_refuse_with_redis_up(monkeypatch):
    monkeypatch.setattr(ratelimit, "log", Warnings())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    down = limited_app(f"redis://127.0.0.1:{closed_port}/0", public="1/minute")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=down), base_url="http://testserver") as c:
        assert [(await c.get("/v1/public/hello")).status_code for _ in range(3)] == [200, 200, 200]
    # The same limits against the test Redis (from a fresh address, so no earlier budget) do refuse.
    up = limited_app(None, public="1/minute")
    transport = httpx.ASGITransport(app=up, client=(fresh_ip(), 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        statuses = [(await c.get("/v1/public/hello")).status_code for _ in range(2)]
    assert statuses[0] == 200 and statuses[1] == 429


def test_a_malformed_limit_override_is_refused_at_start():
    with pytest.raises(ValueError, match="BOOKINGTMS_RATE_LIMIT_PUBLIC"):
        ratelimit.resolve_limits(get_settings(), {"public": "lots per minute"})
    with pytest.raises(ValueError, match="BOOKINGTMS_RATE_LIMIT_ADMIN='0/minute': a rate limit allows at least one"):
        ratelimit.resolve_limits(get_settings(), {"admin": "0/minute"})


def test_the_defaults_are_the_prds():
    settings = get_settings().model_copy(update={"rate_limit_public": None, "rate_limit_authenticated": None,
                                                  "rate_limit_admin": None, "rate_limit_webhook": None})
    items = ratelimit.resolve_limits(settings)
    assert {name: (item.amount, item.get_expiry()) for name, item in items.items()} == {
        "public": (100, 60), "authenticated": (1000, 60), "admin": (5000, 60), "webhook": (10000, 60)}


async def test_the_window_moves_each_hit_leaves_it_on_its_own():
    """A moving window, not a fixed one: a refused caller gets one request back when its oldest
    counted hit is older than the window, not all of them at a window boundary."""
    app = limited_app(None, public="2 per 2 second")
    transport = httpx.ASGITransport(app=app, client=(fresh_ip(), 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        first = await c.get("/v1/public/hello")
        await asyncio.sleep(1.0)
        second = await c.get("/v1/public/hello")
        third = await c.get("/v1/public/hello")
        assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
        assert [first.headers["RateLimit-Remaining"], second.headers["RateLimit-Remaining"]] == ["1", "0"]
        assert third.headers["Retry-After"] == "1"  # when the first hit leaves the window
        assert third.headers["RateLimit-Policy"] == "2;w=2"
        await asyncio.sleep(1.1)  # the first hit has left; the second is still in the window
        fourth = await c.get("/v1/public/hello")
        fifth = await c.get("/v1/public/hello")
    assert (fourth.status_code, fourth.headers["RateLimit-Remaining"]) == (200, "0")
    assert fifth.status_code == 429


async def test_a_burst_larger_than_the_redis_pool_is_counted_exactly(monkeypatch):
    """150 requests at once from one address, against a limit of 120: exactly 120 are served. A
    burst is when limits matter most; the limiter's connection pool must make it wait, not fail
    open (a pool capped at 100 connections once turned the limits off for five seconds here)."""
    warnings = Warnings()
    monkeypatch.setattr(ratelimit, "log", warnings)
    # About the pool, not about a slow Redis: 150 connections opened at once on a busy test machine
    # can take longer than the 0.5 s that would (rightly) fail open.
    monkeypatch.setattr(ratelimit, "REDIS_TIMEOUT_SECONDS", 10.0)
    app = limited_app(None, public="120/minute")
    transport = httpx.ASGITransport(app=app, client=(fresh_ip(), 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        burst = await asyncio.gather(*(c.get("/v1/public/hello") for _ in range(150)))
    assert sorted(r.status_code for r in burst) == [200] * 120 + [429] * 30
    assert all("ratelimit-remaining" in r.headers for r in burst)  # every one counted, none let through
    assert warnings.events == []
