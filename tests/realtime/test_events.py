"""Real-time availability: GET /v1/public/venues/{embed_key}/events on real `bookingtms serve`
processes sharing one database. A change committed through server B reaches a widget subscribed on
server A (PostgreSQL NOTIFY at commit -> A's one LISTEN connection -> the venue's streams) within a
second; nothing leaks to other venues or organizations; rolled-back changes are never announced;
heartbeats, the per-process stream limit, reconnection after a lost LISTEN connection, Last-Event-ID
and a quick shutdown with streams open."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.factories import future_session, make_activity, make_tenant, unique
from tests.realtime.sse import open_stream

HEARTBEAT = 0.5


@pytest.fixture(scope="module")
def servers():
    """A: where widgets subscribe (short heartbeat, two streams at most); B: where changes are made."""
    a = LiveServer({"BOOKINGTMS_SSE_HEARTBEAT_SECONDS": str(HEARTBEAT), "BOOKINGTMS_SSE_MAX_STREAMS": "2"})
    try:
        b = LiveServer()
    except Exception:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
async def b_http(servers):
    async with httpx.AsyncClient(base_url=servers[1].url, timeout=10) as http:
        yield http


async def session_of(client, tenant, capacity: int = 10) -> dict:
    activity = await make_activity(client, tenant, capacity=capacity, schedule={
        "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "times": ["12:00"]}]})
    return await future_session(client, tenant, activity)


def assert_availability(event, session: dict, remaining: int, total: int = 10, closed: bool = False) -> None:
    assert event.event == "availability" and event.id
    assert event.json() == {"session_id": session["id"], "activity_id": session["activity_id"],
                            "start_time": session["start_time"], "capacity_total": total,
                            "capacity_remaining": remaining, "is_closed": closed}


async def test_holds_releases_and_staff_edits_on_b_reach_a_subscriber_within_a_second(client, tenant, servers, b_http):
    session = await session_of(client, tenant)
    reservations = f"/v1/public/venues/{tenant.embed_key}/reservations"
    async with open_stream(servers[0].url, tenant.embed_key) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        first = await stream.next(2)
        assert first.comments == ["connected"] and 1000 <= first.retry <= 5000

        held = await b_http.post(reservations, json={"session_id": session["id"], "spots": 3,
                                                     "customer_email": "ann@example.com"})
        assert held.status_code == 201, held.text
        committed = time.monotonic()
        event = await stream.next_event(1.0)
        assert event.received - committed < 1.0
        assert_availability(event, session, remaining=7)

        released = await b_http.delete(f"{reservations}/{held.json()['reservation_id']}")
        assert released.status_code == 204, released.text
        committed = time.monotonic()
        event = await stream.next_event(1.0)
        assert event.received - committed < 1.0
        assert_availability(event, session, remaining=10)

        staff = {**tenant.headers}
        etag = (await b_http.get(f"/v1/sessions/{session['id']}", headers=staff)).headers["etag"]
        edited = await b_http.patch(f"/v1/sessions/{session['id']}", headers={**staff, "If-Match": etag},
                                    json={"capacity_total": 6, "is_closed": True})
        assert edited.status_code == 200, edited.text
        committed = time.monotonic()
        event = await stream.next_event(1.0)
        assert event.received - committed < 1.0
        assert_availability(event, session, remaining=6, total=6, closed=True)
        # One event per change, each with its own id.
        assert await stream.events_within(0.3) == []


async def test_another_venue_or_organization_hears_nothing(client, platform_admin, tenant, servers, b_http):
    session = await session_of(client, tenant)
    other_org = await make_tenant(client, platform_admin)
    venue = await client.post("/v1/venues", headers=tenant.headers, json={
        "name": unique("second venue"), "timezone": "America/New_York"})
    assert venue.status_code == 201, venue.text
    second_venue_key = venue.json()["embed_key"]
    await wait_for_open_streams(servers[0], 0, within=3)  # A serves two streams at most

    async with open_stream(servers[0].url, other_org.embed_key) as foreign, \
            open_stream(servers[0].url, second_venue_key) as sibling:
        assert foreign.response.status_code == sibling.response.status_code == 200
        held = await b_http.post(f"/v1/public/venues/{tenant.embed_key}/reservations", json={
            "session_id": session["id"], "spots": 2, "customer_email": "ann@example.com"})
        assert held.status_code == 201, held.text
        assert await foreign.events_within(1.0) == []
        assert await sibling.events_within(0.2) == []
    # The change was real and announced, to its own venue's subscribers only.
    async with open_stream(servers[0].url, tenant.embed_key) as own:
        again = await b_http.post(f"/v1/public/venues/{tenant.embed_key}/reservations", json={
            "session_id": session["id"], "spots": 1, "customer_email": "bo@example.com"})
        assert again.status_code == 201, again.text
        assert_availability(await own.next_event(1.0), session, remaining=7)


async def test_heartbeats_keep_an_idle_stream_alive(tenant, servers):
    async with open_stream(servers[0].url, tenant.embed_key) as stream:
        started = time.monotonic()
        beats = []
        while len(beats) < 3:
            block = await stream.next(2 * HEARTBEAT + 0.5)
            if block.comments == ["heartbeat"]:
                beats.append(block.received)
        assert beats[-1] - started < 3 * HEARTBEAT + 1.0
        assert all(later - earlier < 2 * HEARTBEAT for earlier, later in zip(beats, beats[1:]))


async def open_streams_on(server) -> float:
    """What the server's bookingtms_sse_streams gauge says."""
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        text_ = (await http.get("/metrics")).text
    return sum(float(line.split()[-1]) for line in text_.splitlines() if line.startswith("bookingtms_sse_streams "))


async def wait_for_open_streams(server, expected: float, within: float = 1.0) -> None:
    deadline = time.monotonic() + within
    while (found := await open_streams_on(server)) != expected:
        assert time.monotonic() < deadline, f"{found} streams open, expected {expected}"
        await asyncio.sleep(0.05)


async def test_a_full_server_refuses_with_503_and_a_disconnect_frees_the_slot(tenant, servers):
    a = servers[0]
    await wait_for_open_streams(a, 0, within=3)  # earlier tests' streams are gone
    async with open_stream(a.url, tenant.embed_key) as one, open_stream(a.url, tenant.embed_key) as two:
        assert one.response.status_code == two.response.status_code == 200
        assert await open_streams_on(a) == 2
        async with open_stream(a.url, tenant.embed_key) as third:
            assert third.response.status_code == 503
            assert third.response.headers["content-type"].startswith("application/problem+json")
            assert third.response.headers["retry-after"].isdigit()
            assert third.response.json()["code"] == "too_many_streams"
    # Both clients hung up: their slots come back at once.
    await wait_for_open_streams(a, 0, within=1.0)
    async with open_stream(a.url, tenant.embed_key) as again, open_stream(a.url, tenant.embed_key) as more:
        assert again.response.status_code == more.response.status_code == 200


async def test_unknown_embed_key_is_404_and_suspended_organization_403(client, platform_admin, servers):
    async with open_stream(servers[0].url, "k" * 32) as stream:
        assert stream.response.status_code == 404
        assert stream.response.headers["content-type"].startswith("application/problem+json")
        assert stream.response.json()["code"] == "venue_not_found"
    suspended = await make_tenant(client, platform_admin)
    response = await client.patch(f"/v1/platform/organizations/{suspended.organization_id}",
                                  headers=platform_admin.headers, json={"status": "suspended"})
    assert response.status_code == 200, response.text
    async with open_stream(servers[0].url, suspended.embed_key) as stream:
        assert stream.response.status_code == 403
        assert stream.response.json()["code"] == "organization_suspended"


async def test_a_reconnecting_client_is_told_to_resync(tenant, servers):
    async with open_stream(servers[0].url, tenant.embed_key, headers={"Last-Event-ID": "41"}) as stream:
        event = await stream.next_event(2)
        assert event.event == "resync" and event.json() == {"reason": "last_event_id"}


async def test_a_lost_listen_connection_resyncs_and_events_keep_coming(client, tenant, servers, b_http, owner_engine):
    session = await session_of(client, tenant)
    a = servers[0]
    async with open_stream(a.url, tenant.embed_key) as stream:
        with owner_engine.connect() as conn:
            killed = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": f"bookingtms-listen {a.proc.pid}"}).scalar()
        assert killed == 1
        event = await stream.next_event(5)
        assert event.event == "resync" and event.json() == {"reason": "reconnected"}

        held = await b_http.post(f"/v1/public/venues/{tenant.embed_key}/reservations", json={
            "session_id": session["id"], "spots": 4, "customer_email": "ann@example.com"})
        assert held.status_code == 201, held.text
        assert_availability(await stream.next_event(1.0), session, remaining=6)


async def test_a_rolled_back_change_is_never_announced(client, tenant, servers, owner_engine):
    session = await session_of(client, tenant)
    change = text("UPDATE activity_sessions SET capacity_remaining = :n WHERE id = :id")
    async with open_stream(servers[0].url, tenant.embed_key) as stream:
        with owner_engine.connect() as conn:
            conn.execute(change, {"n": 1, "id": session["id"]})
            conn.rollback()
        assert await stream.events_within(1.0) == []
        with owner_engine.begin() as conn:  # the same path committed: announced, with its value
            conn.execute(change, {"n": 9, "id": session["id"]})
        assert_availability(await stream.next_event(1.0), session, remaining=9)


async def test_sigterm_ends_open_streams_and_the_server_promptly(tenant):
    server = LiveServer()
    try:
        async with open_stream(server.url, tenant.embed_key) as stream:
            await stream.next(2)  # connected
            started = time.monotonic()
            os.kill(server.proc.pid, signal.SIGTERM)
            with pytest.raises(EOFError):
                while True:
                    await stream.next(10)
            await asyncio.to_thread(server.proc.wait, 15)
            # Without it, uvicorn would wait for the open stream for ever (no graceful-shutdown limit).
            print(f"\nSIGTERM to exit with a stream open: {time.monotonic() - started:.2f}s")
    finally:
        server.stop()


async def test_a_widget_on_another_origin_may_open_and_reopen_the_stream(tenant, servers):
    origin = {"Origin": "https://escape-rooms.example"}
    path = f"/v1/public/venues/{tenant.embed_key}/events"
    async with httpx.AsyncClient(base_url=servers[0].url, timeout=5) as http:
        # A reconnecting EventSource sends Last-Event-ID, which is not CORS-safelisted: preflighted.
        preflight = await http.options(path, headers={**origin, "Access-Control-Request-Method": "GET",
                                                      "Access-Control-Request-Headers": "last-event-id"})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "last-event-id" in preflight.headers["access-control-allow-headers"].lower()
    async with open_stream(servers[0].url, tenant.embed_key, headers={**origin, "Last-Event-ID": "7"}) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["access-control-allow-origin"] == "*"
        assert (await stream.next_event(2)).event == "resync"
