"""GET /metrics (issue 5, item 10): Prometheus text with request latency per route template,
holds by outcome, bookings by status, database pool use and job lag; served to the local host only.

These tests use the in-process app, whose samples live in the default registry shared by every
test of this process, so they compare values before and after what they do."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
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
