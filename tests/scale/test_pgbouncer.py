"""A live server whose app connections go through a real PgBouncer in transaction mode (prepared
statements off), with few server connections so that every one of them is handed from request to
request and from tenant to tenant. Migrations and the owner's connections go direct."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from bookingtms.config import Settings
from bookingtms.db.urls import app_role_password
from tests.factories import book, checkout, future_session, hold, make_activity, make_tenant
from tests.infra.pgcluster import PgBouncer, PgCluster, pgserver_bin_dir
from tests.scale.conftest import cli, deployment_env, start_deployment, stop_deployment

# One xdist worker runs the whole module, so its deployment starts once (scripts/test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("scale-pgbouncer")

SERVER_CONNECTIONS = 3  # PgBouncer's pool per (database, user): far fewer than concurrent requests


@pytest.fixture(scope="module")
async def pooled(tmp_path_factory):
    primary = PgCluster.start(pgserver_bin_dir(), dbname="bookingtms")
    bouncer = None
    try:
        settings = Settings()
        bouncer = PgBouncer.start(primary, pool_mode="transaction", pool_size=SERVER_CONNECTIONS,
                                  users={settings.app_db_role: app_role_password(settings)})
        env = deployment_env(tmp_path_factory.mktemp("pooled"), database_url=bouncer.url_for("bookingtms"),
                             direct_url=primary.url, prepared_statements=False)
        deployment = await start_deployment(env, [bouncer, primary])
    except BaseException:
        for server in (bouncer, primary):
            if server is not None:
                server.stop()
        raise
    deployment.primary, deployment.bouncer = primary, bouncer
    yield deployment
    await stop_deployment(deployment)


def app_pool(bouncer: PgBouncer) -> dict:
    """PgBouncer's pool of the application role on the app's database."""
    pools = [p for p in bouncer.show("POOLS") if p["database"] == "bookingtms" and p["user"] == "bookingtms_app"]
    assert pools, "the app never connected through PgBouncer"
    return pools[0]


def app_transactions(bouncer: PgBouncer) -> int:
    return next(s["total_xact_count"] for s in bouncer.show("STATS") if s["database"] == "bookingtms")


async def test_the_booking_flow_runs_through_pgbouncer(pooled):
    c, bouncer = pooled.client, pooled.bouncer
    before = app_transactions(bouncer)
    t = await make_tenant(c, pooled.admin)
    session = await future_session(c, t, await make_activity(c, t, capacity=8))

    booking = await book(c, t, session["id"], spots=3, email="pooled@example.com")
    read_back = await c.get(f"/v1/bookings/{booking['id']}", headers=t.headers)
    assert read_back.status_code == 200 and read_back.json()["guest_count"] == 3, read_back.text
    listed = await c.get("/v1/bookings", headers=t.headers)
    assert [b["id"] for b in listed.json()["items"]] == [booking["id"]]
    cancelled = await c.post(f"/v1/bookings/{booking['id']}/cancel", headers=t.headers, json={"reason": "test"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    public = await c.get(f"/v1/public/bookings/{booking['reference']}", params={"email": "pooled@example.com"})
    assert public.status_code == 200 and public.json()["status"] == "cancelled", public.text

    # Requests repeat the same statements many times over: with server-side prepared statements a
    # pooled connection would meet a statement prepared elsewhere. They all went through PgBouncer.
    assert app_transactions(bouncer) - before > 12  # at least one per request above and in the factories
    assert app_pool(bouncer)["sv_active"] + app_pool(bouncer)["sv_idle"] + app_pool(bouncer)["sv_used"] \
        <= SERVER_CONNECTIONS


async def test_a_hundred_concurrent_holds_on_ten_spots_over_pgbouncer(pooled):
    c = pooled.client
    t = await make_tenant(c, pooled.admin)
    session = await future_session(c, t, await make_activity(c, t, capacity=10))

    answers = await asyncio.gather(*(hold(c, t, session["id"], 1, email=f"buyer{i}@example.com")
                                     for i in range(100)))
    outcomes = Counter((r.status_code, r.json().get("code")) for r in answers)
    assert outcomes == {(201, None): 10, (409, "sold_out"): 90}, outcomes

    winners = [r.json()["reservation_id"] for r in answers if r.status_code == 201]
    done = await asyncio.gather(*(checkout(c, t, rid, email=f"winner{i}@example.com")
                                  for i, rid in enumerate(winners)))
    assert [r.status_code for r in done] == [201] * 10
    availability = await c.get(f"/v1/public/venues/{t.embed_key}/availability",
                               params={"activity_id": session["activity_id"]})
    remaining = {s["id"]: s["capacity_remaining"] for s in availability.json()["sessions"]}
    assert remaining[session["id"]] == 0
    doctor = cli(pooled.env, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


async def test_organizations_stay_apart_on_shared_server_connections(pooled):
    """Row-level security's context is transaction-local, so a server connection handed from one
    organization's request to the other's carries nothing over."""
    c, bouncer = pooled.client, pooled.bouncer
    a, b = await make_tenant(c, pooled.admin), await make_tenant(c, pooled.admin)
    own = {}
    for tenant in (a, b):
        session = await future_session(c, tenant, await make_activity(c, tenant, capacity=10))
        own[tenant.organization_id] = {(await book(c, tenant, session["id"], email=f"{i}@example.com"))["id"]
                                       for i in range(3)}

    # Interleaved, concurrent reads by both organizations over the few server connections.
    callers = [a, b] * 30
    listings = await asyncio.gather(*(c.get("/v1/bookings", headers=t.headers) for t in callers))
    for tenant, listing in zip(callers, listings):
        assert listing.status_code == 200, listing.text
        assert {item["id"] for item in listing.json()["items"]} == own[tenant.organization_id]
    assert app_pool(bouncer)["sv_active"] + app_pool(bouncer)["sv_idle"] + app_pool(bouncer)["sv_used"] \
        <= SERVER_CONNECTIONS

    crossed = await asyncio.gather(*(c.get(f"/v1/bookings/{booking_id}", headers=a.headers)
                                     for booking_id in own[b.organization_id]),
                                   *(c.get(f"/v1/bookings/{booking_id}", headers=b.headers)
                                     for booking_id in own[a.organization_id]))
    assert [r.status_code for r in crossed] == [404] * 6
