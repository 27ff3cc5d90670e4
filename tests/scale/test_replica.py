"""A real streaming replica (pg_basebackup from a real primary) behind a live server with
DATABASE_READ_URL set. Pausing the replica's WAL replay freezes what it shows, so anything a
request answers while paused tells where it was read: lists (bookings, customers, export, users,
API keys, promo codes, audit logs, calendar feed) lag, the booking flow and single-object reads
(read-your-writes) do not. Every write still goes to the primary: nothing here answers 500."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from tests.factories import book, checkout, future_session, hold, make_activity, make_tenant
from tests.infra.pgcluster import pause_replay, resume_replay, wait_for_replay
from tests.scale.conftest import cli

# One xdist worker runs the whole module, so its deployment starts once (scripts/test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("scale-replica")


def refs(listing) -> set[str]:
    assert listing.status_code == 200, listing.text
    return {b["booking_reference"] for b in listing.json()["items"]}


def export_refs(export) -> set[str]:
    assert export.status_code == 200, export.text
    return {row["reference"] for row in csv.DictReader(io.StringIO(export.text))}


def emails(listing) -> set[str]:
    assert listing.status_code == 200, listing.text
    return {c["email"] for c in listing.json()["items"]}


async def test_lists_lag_on_the_replica_while_the_booking_flow_reads_its_own_writes(replicated):
    c, primary, replica = replicated.client, replicated.primary, replicated.replica
    t = await make_tenant(c, replicated.admin)
    session = await future_session(c, t, await make_activity(c, t, capacity=10))
    first = await book(c, t, session["id"], email="first@example.com")
    wait_for_replay(primary, replica)
    assert refs(await c.get("/v1/bookings", headers=t.headers)) == {first["reference"]}

    pause_replay(replica)
    try:
        held = await hold(c, t, session["id"], 2, email="second@example.com")
        assert held.status_code == 201, held.text
        done = await checkout(c, t, held.json()["reservation_id"], email="second@example.com")
        assert done.status_code == 201, done.text
        second = done.json()["booking"]

        # The caller's own booking reads back at once (primary) ...
        by_id = await c.get(f"/v1/bookings/{second['id']}", headers=t.headers)
        assert by_id.status_code == 200 and by_id.json()["guest_count"] == 2, by_id.text
        by_ref = await c.get(f"/v1/bookings/by-reference/{second['reference']}", headers=t.headers)
        assert by_ref.status_code == 200, by_ref.text
        public = await c.get(f"/v1/public/bookings/{second['reference']}",
                             params={"email": "second@example.com"})
        assert public.status_code == 200 and public.json()["status"] == "confirmed", public.text

        # ... while the lists come from the paused replica and do not show it yet.
        assert refs(await c.get("/v1/bookings", headers=t.headers)) == {first["reference"]}
        assert export_refs(await c.get("/v1/bookings/export.csv", headers=t.headers)) == {first["reference"]}
        assert emails(await c.get("/v1/customers", headers=t.headers)) == {"first@example.com"}

        # Reading a list is audited on the primary, replica or not.
        listed = primary.execute("SELECT count(*) FROM audit_log WHERE organization_id = %s AND action = %s",
                                 (uuid.UUID(t.organization_id), "bookings.listed"), dbname="bookingtms")[0][0]
        assert listed == 2
    finally:
        resume_replay(replica)

    wait_for_replay(primary, replica)
    both = {first["reference"], second["reference"]}
    assert refs(await c.get("/v1/bookings", headers=t.headers)) == both
    assert export_refs(await c.get("/v1/bookings/export.csv", headers=t.headers)) == both
    assert emails(await c.get("/v1/customers", headers=t.headers)) == {"first@example.com", "second@example.com"}


async def test_every_list_switched_to_the_replica_answers_from_it(replicated):
    """Each endpoint moved to the replica answers 200 (a write there would fail: the transaction is
    read-only and the server is a standby) with the replica's view, and catches up."""
    c, primary, replica = replicated.client, replicated.primary, replicated.replica
    t = await make_tenant(c, replicated.admin)
    activity = await make_activity(c, t, capacity=10)
    session = await future_session(c, t, activity)
    token = await c.post(f"/v1/venues/{t.venue_id}/calendar-token", headers=t.headers)
    assert token.status_code == 200, token.text
    feed_path = token.json()["url"].split("://", 1)[1].split("/", 1)[1]
    wait_for_replay(primary, replica)

    pause_replay(replica)
    try:
        booking = await book(c, t, session["id"], email="late@example.com")
        promo = await c.post("/v1/promo-codes", headers=t.headers, json={
            "code": "LATE10", "discount_type": "percent", "discount_value": 10})
        assert promo.status_code == 201, promo.text
        key = await c.post("/v1/api-keys", headers=t.headers, json={"name": "late", "permissions": ["bookings.view"]})
        assert key.status_code == 201, key.text
        invited = await c.post("/v1/users", headers=t.headers, json={
            "email": "late.staff@example.com", "full_name": "Late Staff", "role": "staff"})
        assert invited.status_code == 201, invited.text
        other = await make_tenant(c, replicated.admin)  # a platform write

        # Single objects: the primary, so they are there at once.
        assert (await c.get(f"/v1/promo-codes/{promo.json()['id']}", headers=t.headers)).status_code == 200
        assert (await c.get(f"/v1/users/{invited.json()['id']}", headers=t.headers)).status_code == 200
        customer_id = (await c.get(f"/v1/bookings/{booking['id']}", headers=t.headers)).json()["customer_id"]
        assert (await c.get(f"/v1/customers/{customer_id}", headers=t.headers)).status_code == 200

        stale = await _replica_views(c, t, replicated, feed_path, other.organization_id)
        assert booking["reference"] not in stale["bookings"]
        assert booking["reference"] not in stale["export"]
        assert "late@example.com" not in stale["customers"]
        assert "LATE10" not in stale["promo_codes"]
        assert "late" not in stale["api_keys"]
        assert "late.staff@example.com" not in stale["users"]
        assert "promo_code.created" not in stale["audit"]
        assert booking["reference"] not in stale["feed"]
        assert stale["platform_audit"] == set()
    finally:
        resume_replay(replica)

    wait_for_replay(primary, replica)
    fresh = await _replica_views(c, t, replicated, feed_path, other.organization_id)
    assert booking["reference"] in fresh["bookings"]
    assert booking["reference"] in fresh["export"]
    assert "late@example.com" in fresh["customers"]
    assert "LATE10" in fresh["promo_codes"]
    assert "late" in fresh["api_keys"]
    assert "late.staff@example.com" in fresh["users"]
    assert "promo_code.created" in fresh["audit"]
    assert booking["reference"] in fresh["feed"]
    assert fresh["platform_audit"] == {"organization.created"}


async def _replica_views(c, t, replicated, feed_path: str, other_org_id: str) -> dict:
    """What each endpoint served from the replica shows now (each must answer 200)."""
    gets = {
        "bookings": c.get("/v1/bookings", headers=t.headers),
        "export": c.get("/v1/bookings/export.csv", headers=t.headers),
        "customers": c.get("/v1/customers", headers=t.headers),
        "promo_codes": c.get("/v1/promo-codes", headers=t.headers),
        "api_keys": c.get("/v1/api-keys", headers=t.headers),
        "users": c.get("/v1/users", headers=t.headers),
        "audit": c.get("/v1/audit-log", headers=t.headers, params={"limit": 100}),
        "feed": c.get("/" + feed_path),
        "platform_audit": c.get("/v1/platform/audit-log", headers=replicated.admin.headers,
                                params={"target": other_org_id}),
    }
    seen = {}
    for name, request in gets.items():
        response = await request
        assert response.status_code == 200, f"{name}: {response.status_code} {response.text}"
        seen[name] = response
    return {
        "bookings": refs(seen["bookings"]), "export": export_refs(seen["export"]),
        "customers": emails(seen["customers"]),
        "promo_codes": {p["code"] for p in seen["promo_codes"].json()["items"]},
        "api_keys": {k["name"] for k in seen["api_keys"].json()["items"]},
        "users": {u["email"] for u in seen["users"].json()["items"]},
        "audit": {e["action"] for e in seen["audit"].json()["items"]},
        "feed": seen["feed"].text,
        "platform_audit": {e["action"] for e in seen["platform_audit"].json()["items"]},
    }


async def test_the_whole_booking_flow_works_with_a_replica(replicated):
    c, primary, replica = replicated.client, replicated.primary, replicated.replica
    t = await make_tenant(c, replicated.admin)
    session = await future_session(c, t, await make_activity(c, t, capacity=6, full_refund_hours=1))

    online = await book(c, t, session["id"], spots=2, email="online@example.com")
    staff = await c.post("/v1/bookings", headers=t.headers, json={
        "session_id": session["id"], "guest_count": 1,
        "customer": {"email": "walkin@example.com", "first_name": "Walk", "last_name": "In"}})
    assert staff.status_code == 201, staff.text
    checked = await c.post(f"/v1/bookings/{staff.json()['id']}/check-in", headers=t.headers)
    assert checked.status_code == 200 and checked.json()["checked_in_at"], checked.text
    cancelled = await c.post(f"/v1/public/bookings/{online['reference']}/cancel",
                             json={"email": "online@example.com"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text

    availability = await c.get(f"/v1/public/venues/{t.embed_key}/availability",
                               params={"activity_id": session["activity_id"]})
    remaining = {s["id"]: s["capacity_remaining"] for s in availability.json()["sessions"]}
    assert remaining[session["id"]] == 5  # 6 - 2 (cancelled, given back) - 1

    wait_for_replay(primary, replica)
    listed = (await c.get("/v1/bookings", headers=t.headers)).json()["items"]
    assert {(b["booking_reference"], b["status"]) for b in listed} == {
        (online["reference"], "cancelled"), (staff.json()["booking_reference"], "confirmed")}

    doctor = cli(replicated.env, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    # The standby took no write: it is still in recovery, and a write there is refused.
    assert replica.execute("SELECT pg_is_in_recovery()")[0][0] is True
