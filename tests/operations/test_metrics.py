"""GET /metrics (issue 5, item 10): Prometheus text with request latency per route template,
holds by outcome, bookings by status, database pool use and job lag; served to the local host only.

Most tests use the in-process app, whose samples live in the default registry shared by every
test of this process, so they compare values before and after what they do; the rate-limit test
uses a fresh server process of its own."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.factories import book, future_session, hold, make_activity

AVAILABILITY = "/v1/public/venues/{embed_key}/availability"


def parse(body: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text page: (name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_latency_is_filed_under_the_route_template(client, tenant):
    before = await scrape(client)
    for _ in range(3):
        response = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability")
        assert response.status_code == 200
    missing = await client.get(f"/v1/public/venues/no-such-key-{uuid.uuid4().hex}/availability")
    assert missing.status_code == 404
    junk = await client.get(f"/no/such/path/{uuid.uuid4().hex}")
    assert junk.status_code == 404
    after = await scrape(client)

    count = "bookingtms_http_request_duration_seconds_count"
    assert value(after, count, method="GET", route=AVAILABILITY, status="2xx") \
        - value(before, count, method="GET", route=AVAILABILITY, status="2xx") == 3
    assert value(after, count, method="GET", route=AVAILABILITY, status="4xx") \
        - value(before, count, method="GET", route=AVAILABILITY, status="4xx") == 1
    assert value(after, count, method="GET", route="unmatched", status="4xx") \
        - value(before, count, method="GET", route="unmatched", status="4xx") == 1
    # the raw paths never become labels
    routes = {dict(labels).get("route") for name, labels in after if name == count}
    assert not any(tenant.embed_key in (r or "") or "no/such" in (r or "") for r in routes)
    # the histogram has its buckets, and the time is really measured
    assert value(after, "bookingtms_http_request_duration_seconds_bucket", method="GET", route=AVAILABILITY,
                 status="2xx", le="+Inf") >= 3
    assert value(after, "bookingtms_http_request_duration_seconds_sum", method="GET", route=AVAILABILITY,
                 status="2xx") > value(before, "bookingtms_http_request_duration_seconds_sum", method="GET",
                                       route=AVAILABILITY, status="2xx")


async def test_holds_by_outcome_and_bookings_by_status(client, tenant):
    activity = await make_activity(client, tenant, capacity=2)
    session = await future_session(client, tenant, activity)
    before = await scrape(client)
    first = await hold(client, tenant, session["id"], spots=2)
    assert first.status_code == 201, first.text
    refused = await hold(client, tenant, session["id"], spots=1)
    assert refused.status_code == 409 and refused.json()["code"] == "sold_out"
    other = await make_activity(client, tenant, capacity=4)
    await book(client, tenant, (await future_session(client, tenant, other))["id"], spots=1)
    after = await scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("bookingtms_holds_total", outcome="success") == 2  # the first hold and the booking's
    assert delta("bookingtms_holds_total", outcome="sold_out") == 1
    assert delta("bookingtms_bookings_total", status="confirmed") == 1


def test_rate_limit_refusals_are_counted_by_tier(live_server_factory):
    """A server with a public limit of 3 a minute: the 4th and 5th requests from one address are
    refused, counted as public-tier refusals, and timed under their route; /metrics itself is never
    limited."""
    server = live_server_factory({"BOOKINGTMS_RATE_LIMITS": "1", "BOOKINGTMS_RATE_LIMIT_PUBLIC": "3/minute",
                                  "BOOKINGTMS_TRUSTED_PROXIES": "127.0.0.1"})
    address = str(ipaddress.IPv6Address((0x20010DB8 << 96) | random.getrandbits(64)))  # documentation range
    with httpx.Client(base_url=server.url, timeout=15) as http:
        statuses = [http.get("/v1/public/venues/no-such-venue/availability",
                             headers={"X-Forwarded-For": address}).status_code for _ in range(5)]
        assert statuses == [404, 404, 404, 429, 429]
        scrapes = [http.get("/metrics") for _ in range(5)]
    assert [r.status_code for r in scrapes] == [200] * 5
    samples = parse(scrapes[-1].text)
    assert value(samples, "bookingtms_rate_limited_total", tier="public") == 2
    assert value(samples, "bookingtms_rate_limited_total", tier="authenticated") == 0
    assert samples[("bookingtms_rate_limits_skipped_total", frozenset())] == 0  # Redis up: every request counted
    assert value(samples, "bookingtms_http_request_duration_seconds_count",
                 method="GET", route=AVAILABILITY, status="4xx") == 5


async def test_metrics_is_not_public(app):
    """Served to loopback only; a remote caller (or one relayed by an untrusted hop) is refused."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as remote:
        response = await remote.get("/metrics")
        spoofed = await remote.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "metrics_forbidden"
    assert spoofed.status_code == 403


async def test_metrics_is_not_in_the_api_document(client):
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


DAY = 86400


async def test_job_lag_shows_how_late_the_oldest_due_item_is(client, tenant, owner_engine):
    """A hold that expired a day ago and a notification due a day ago show as a day of lag until
    their jobs deal with them."""
    from bookingtms.db.engine import DbContext, tenant_transaction
    from bookingtms.notifications.jobs import deliver_for_organization
    from bookingtms.reservations.service import expire_due

    activity = await make_activity(client, tenant, capacity=5)
    session = await future_session(client, tenant, activity)
    held = await hold(client, tenant, session["id"], spots=1)
    assert held.status_code == 201, held.text
    await book(client, tenant, session["id"], spots=1)  # queues a confirmation email
    org = uuid.UUID(tenant.organization_id)
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE slot_reservations SET expires_at = now() - interval '1 day' "
                          "WHERE organization_id = :o AND id = :r"), {"o": org, "r": held.json()["reservation_id"]})
        conn.execute(text("UPDATE notification_outbox SET next_attempt_at = now() - interval '1 day' "
                          "WHERE organization_id = :o AND status = 'pending'"), {"o": org})

    late = await scrape(client)
    assert value(late, "bookingtms_job_lag_seconds", job="expire_holds") >= DAY
    assert value(late, "bookingtms_job_lag_seconds", job="deliver_notifications") >= DAY
    assert ("bookingtms_job_lag_seconds", frozenset({("job", "release_lapsed_payments")})) in late

    async with tenant_transaction(DbContext(organization_id=org)) as db:
        assert await expire_due(db, org) == 1
    assert await deliver_for_organization(org) >= 1
    caught_up = await scrape(client)
    assert value(caught_up, "bookingtms_job_lag_seconds", job="expire_holds") < DAY
    assert value(caught_up, "bookingtms_job_lag_seconds", job="deliver_notifications") < DAY


async def test_pool_counts_connections_in_use_and_waits(client, settings):
    """A pool of one connection: a second checkout waits for the first to come back, and /metrics
    shows both the connection in use and the wait."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from bookingtms.db.urls import app_url
    from bookingtms.metrics import MeasuredPool

    name = f"test-{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(app_url(settings), poolclass=MeasuredPool, pool_size=1, max_overflow=0,
                                 pool_timeout=10, pool_logging_name=name)
    try:
        fresh = await scrape(client)  # a pool that never waited shows 0 waits, not nothing
        assert ("bookingtms_db_pool_waits_total", frozenset({("pool", name)})) in fresh
        first = await engine.connect()
        busy = await scrape(client)
        assert value(busy, "bookingtms_db_pool_connections_in_use", pool=name) == 1
        assert value(busy, "bookingtms_db_pool_waits_total", pool=name) == 0

        second = asyncio.create_task(engine.connect().start())
        await asyncio.sleep(0.3)
        assert not second.done()  # really waiting for the only connection
        waiting = await scrape(client)
        assert value(waiting, "bookingtms_db_pool_waits_total", pool=name) == 1
        await first.close()
        conn = await asyncio.wait_for(second, 10)
        assert value(await scrape(client), "bookingtms_db_pool_connections_in_use", pool=name) == 1
        await conn.close()
        idle = await scrape(client)
        assert value(idle, "bookingtms_db_pool_connections_in_use", pool=name) == 0
        assert value(idle, "bookingtms_db_pool_waits_total", pool=name) == 1
    finally:
        await engine.dispose()
