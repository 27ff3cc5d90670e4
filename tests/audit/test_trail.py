"""The audit trail records every write by staff and every read of customers' personal data, with
actor, organization, action, target, request id, client address and changed fields, in the same
transaction as the change; refused requests and customers' own widget actions leave nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from bookingtms.db.urls import app_url
from tests.audit.helpers import audit_rows, one_audit_row, send
from tests.factories import (
    Tenant,
    add_staff,
    bearer,
    book,
    checkout,
    future_session,
    hold,
    make_activity,
    make_tenant,
    today,
    unique,
)


@dataclass
class Shop:
    tenant: Tenant
    owner_id: str
    activity: dict
    session: dict
    booking: dict
    customer_id: str
    customer_email: str


@pytest.fixture(scope="module")
async def shop(client, platform_admin) -> Shop:
    tenant = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant, capacity=30)
    session = await future_session(client, tenant, activity)
    email = f"{unique('guest')}@example.com"
    booking = await book(client, tenant, session["id"], spots=2, email=email)
    customers = await client.get("/v1/customers", headers=tenant.headers, params={"q": email})
    me = await client.get("/v1/me", headers=tenant.headers)
    return Shop(tenant=tenant, owner_id=me.json()["id"], activity=activity, session=session, booking=booking,
                customer_id=customers.json()["items"][0]["id"], customer_email=email)


def assert_by_owner(row, shop: Shop, rid: str, action: str, target_type: str, target_id: str | None) -> None:
    assert row.action == action
    assert row.organization_id == shop.tenant.organization_id
    assert (row.actor_id, row.actor_type, row.actor_label) == (shop.owner_id, "user", shop.tenant.owner_email)
    assert (row.target_type, row.target_id) == (target_type, target_id)
    assert row.request_id == rid and row.ip == "127.0.0.1"
    assert abs(row.created_at - datetime.now(timezone.utc)) < timedelta(minutes=5)


async def test_every_staff_write_is_recorded_with_its_changes(client, shop, owner_engine):
    h, org_venue = shop.tenant.headers, shop.tenant.venue_id

    def check(rid, action, target_type, target_id, changes=None):
        row = one_audit_row(owner_engine, rid)
        assert_by_owner(row, shop, rid, action, target_type, target_id)
        if changes is not None:
            assert row.changes == changes, row.changes
        return row

    # Venues
    created, rid = await send(client, "POST", "/v1/venues", h, json={"name": "Annex", "timezone": "Europe/Paris"},
                              expect=201)
    venue_id = created.json()["id"]
    row = check(rid, "venue.created", "venue", venue_id)
    assert row.changes["name"] == {"from": None, "to": "Annex"}
    assert row.changes["timezone"] == {"from": None, "to": "Europe/Paris"}
    _, rid = await send(client, "PATCH", f"/v1/venues/{venue_id}", h, json={"city": "Paris", "name": "Annex"},
                        expect=200)
    check(rid, "venue.updated", "venue", venue_id, {"city": {"from": "", "to": "Paris"}})  # name did not change
    _, rid = await send(client, "DELETE", f"/v1/venues/{venue_id}", h, expect=204)
    check(rid, "venue.archived", "venue", venue_id, {"status": {"from": "active", "to": "archived"}})

    # Activities and sessions
    created, rid = await send(client, "POST", "/v1/activities", h, json={
        "venue_id": org_venue, "name": "Lab", "duration_minutes": 45, "capacity": 6, "price_amount": 1500}, expect=201)
    activity_id = created.json()["id"]
    row = check(rid, "activity.created", "activity", activity_id)
    assert row.changes["price_amount"] == {"from": None, "to": 1500} and row.changes["name"]["to"] == "Lab"
    _, rid = await send(client, "PATCH", f"/v1/activities/{activity_id}", h,
                        json={"price_amount": 1800, "description": "Now with lasers"}, expect=200)
    check(rid, "activity.updated", "activity", activity_id, {"price_amount": {"from": 1500, "to": 1800},
                                                              "description": {"from": "", "to": "Now with lasers"}})
    _, rid = await send(client, "DELETE", f"/v1/activities/{activity_id}", h, expect=204)
    check(rid, "activity.archived", "activity", activity_id,
          {"is_active": {"from": True, "to": False}, "archived": {"from": False, "to": True}})

    day = (today() + timedelta(days=2)).isoformat()
    generated, rid = await send(client, "POST", f"/v1/activities/{shop.activity['id']}/sessions/generate", h,
                                json={"from": day, "to": day}, expect=200)
    check(rid, "sessions.generated", "activity", shop.activity["id"], {"from": day, "to": day, **generated.json()})

    etag = (await client.get(f"/v1/sessions/{shop.session['id']}", headers=h)).headers["etag"]
    before = (await client.get(f"/v1/sessions/{shop.session['id']}", headers=h)).json()
    _, rid = await send(client, "PATCH", f"/v1/sessions/{shop.session['id']}", {**h, "If-Match": etag},
                        json={"capacity_total": before["capacity_total"] + 5}, expect=200)
    check(rid, "session.updated", "session", shop.session["id"], {
        "capacity_total": {"from": before["capacity_total"], "to": before["capacity_total"] + 5},
        "capacity_remaining": {"from": before["capacity_remaining"], "to": before["capacity_remaining"] + 5}})

    # Bookings made, checked in and cancelled by staff
    made, rid = await send(client, "POST", "/v1/bookings", h, json={
        "session_id": shop.session["id"], "guest_count": 3, "notes": "birthday",
        "customer": {"email": f"{unique('walkin')}@example.com", "first_name": "Wal", "last_name": "Kin"}},
        expect=201)
    booking = made.json()
    row = check(rid, "booking.created", "booking", booking["id"])
    assert row.changes["guest_count"] == {"from": None, "to": 3}
    assert row.changes["booking_reference"]["to"] == booking["booking_reference"]
    assert row.changes["notes"]["to"] == "birthday"
    _, rid = await send(client, "POST", f"/v1/bookings/{booking['id']}/check-in", h, expect=200)
    row = check(rid, "booking.checked_in", "booking", booking["id"])
    assert row.changes["checked_in_at"]["from"] is None and row.changes["checked_in_at"]["to"]
    _, rid = await send(client, "POST", f"/v1/bookings/{booking['id']}/cancel", h,
                        json={"refund": "full", "reason": "double booked"}, expect=200)
    row = check(rid, "booking.cancelled", "booking", booking["id"])
    assert row.changes["status"] == {"from": "confirmed", "to": "cancelled"}
    assert row.changes["cancel_reason"] == {"from": None, "to": "double booked"}
    assert row.changes["refund_mode"] == "full"

    # Customers
    _, rid = await send(client, "PATCH", f"/v1/customers/{shop.customer_id}", h, json={"phone": "+1 555 0100"},
                        expect=200)
    check(rid, "customer.updated", "customer", shop.customer_id, {"phone": {"from": None, "to": "+1 555 0100"}})

    # Staff
    invited, rid = await send(client, "POST", "/v1/users", h, json={
        "email": f"{unique('hire')}@example.com", "full_name": "New Hire", "role": "staff"}, expect=201)
    user = invited.json()
    row = check(rid, "user.invited", "user", user["id"])
    assert row.changes["role"] == {"from": None, "to": "staff"} and row.changes["email"]["to"] == user["email"]
    assert "temporary_password" not in str(row.changes) and "password" not in row.changes
    _, rid = await send(client, "PATCH", f"/v1/users/{user['id']}", h, json={"role": "manager"}, expect=200)
    check(rid, "user.updated", "user", user["id"], {"role": {"from": "staff", "to": "manager"}})
    _, rid = await send(client, "DELETE", f"/v1/users/{user['id']}", h, expect=204)
    check(rid, "user.deactivated", "user", user["id"], {"is_active": {"from": True, "to": False}})


async def test_reading_customers_personal_data_is_recorded(client, shop, owner_engine):
    staff_token = await add_staff(client, shop.tenant, "staff")
    staff = bearer(staff_token)
    staff_me = (await client.get("/v1/me", headers=staff)).json()
    b = shop.booking

    def check(rid, action, target_type, target_id):
        row = one_audit_row(owner_engine, rid)
        assert row.action == action and row.organization_id == shop.tenant.organization_id
        assert (row.actor_id, row.actor_type, row.actor_label) == (staff_me["id"], "user", staff_me["email"])
        assert (row.target_type, row.target_id) == (target_type, target_id)
        assert row.request_id == rid and row.ip == "127.0.0.1"
        return row

    _, rid = await send(client, "GET", "/v1/customers", staff, params={"q": shop.customer_email}, expect=200)
    row = check(rid, "customers.listed", "customer", None)
    assert row.changes == {"filter": {"q": shop.customer_email}, "count": 1, "customer_ids": [shop.customer_id]}
    _, rid = await send(client, "GET", f"/v1/customers/{shop.customer_id}", staff, expect=200)
    check(rid, "customer.viewed", "customer", shop.customer_id)

    _, rid = await send(client, "GET", "/v1/bookings", staff, params={"q": b["reference"], "status": "confirmed"},
                        expect=200)
    row = check(rid, "bookings.listed", "booking", None)
    assert row.changes == {"filter": {"q": b["reference"], "status": "confirmed"}, "count": 1,
                           "booking_ids": [b["id"]]}
    _, rid = await send(client, "GET", f"/v1/bookings/{b['id']}", staff, expect=200)
    check(rid, "booking.viewed", "booking", b["id"])
    _, rid = await send(client, "GET", f"/v1/bookings/by-reference/{b['reference']}", staff, expect=200)
    row = check(rid, "booking.viewed", "booking", b["id"])
    assert row.changes == {"reference": b["reference"]}
    _, rid = await send(client, "GET", "/v1/bookings/export.csv", staff, params={"q": shop.customer_email}, expect=200)
    row = check(rid, "bookings.exported", "booking", None)
    assert row.changes == {"filter": {"q": shop.customer_email}, "rows": 1, "format": "csv"}


async def test_an_api_key_is_recorded_as_the_actor(client, shop, owner_engine):
    created = await client.post("/v1/api-keys", headers=shop.tenant.headers,
                                json={"name": "front desk", "permissions": ["bookings.view"]})
    assert created.status_code == 201, created.text
    key = created.json()
    _, rid = await send(client, "GET", f"/v1/bookings/{shop.booking['id']}", bearer(key["secret"]), expect=200)
    row = one_audit_row(owner_engine, rid)
    assert (row.action, row.actor_type, row.actor_id) == ("booking.viewed", "api_key", key["id"])
    assert row.organization_id == shop.tenant.organization_id


async def test_refused_requests_and_customers_own_actions_leave_no_audit_row(client, shop, platform_admin,
                                                                            owner_engine):
    other = await make_tenant(client, platform_admin)
    staff = bearer(await add_staff(client, shop.tenant, "staff"))
    attempts = [
        ("PATCH", f"/v1/venues/{shop.tenant.venue_id}", staff, {"city": "Nowhere"}, 403),  # role lacks it
        ("GET", f"/v1/bookings/{shop.booking['id']}", other.headers, None, 404),  # another organization's
        ("GET", f"/v1/customers/{shop.customer_id}", other.headers, None, 404),
        ("POST", f"/v1/bookings/{shop.booking['id']}/cancel", other.headers, {"refund": "none"}, 404),
        ("PATCH", "/v1/users/00000000-0000-0000-0000-000000000000", shop.tenant.headers, {"full_name": "X"}, 404),
        ("POST", "/v1/venues", shop.tenant.headers, {"name": "No zone"}, 422),
    ]
    for method, path, headers, body, status in attempts:
        _, rid = await send(client, method, path, headers, json=body, expect=status)
        assert audit_rows(owner_engine, rid) == [], f"{method} {path} left an audit row"

    # The widget is the customer's own business: holds, checkouts and self-service are not staff acts.
    email = f"{unique('self')}@example.com"
    held = await hold(client, shop.tenant, shop.session["id"], 1, email)
    done = await checkout(client, shop.tenant, held.json()["reservation_id"], email)
    ref = done.json()["booking"]["reference"]
    for method, path, body in (("GET", f"/v1/public/bookings/{ref}?email={email}", None),
                               ("POST", f"/v1/public/bookings/{ref}/cancel", {"email": email})):
        _, rid = await send(client, method, path, {}, json=body, expect=200)
        assert audit_rows(owner_engine, rid) == []


def test_the_app_role_cannot_change_or_remove_audit_rows(shop, owner_engine, settings):
    org = shop.tenant.organization_id
    count = text("SELECT count(*), md5(string_agg(row_hash, '' ORDER BY chain_seq)) FROM audit_log "
                 "WHERE organization_id = :o")
    with owner_engine.connect() as conn:
        before = tuple(conn.execute(count, {"o": org}).one())
    assert before[0] > 0
    app = create_engine(app_url(settings, driver="psycopg"), pool_size=1, max_overflow=0)
    try:
        for sql in ("UPDATE audit_log SET action = 'tampered' WHERE organization_id = :o",
                    "DELETE FROM audit_log WHERE organization_id = :o"):
            with pytest.raises(DBAPIError) as refused, app.begin() as conn:
                conn.execute(text("SELECT set_config('app.organization_id', :o, true)"), {"o": org})
                conn.execute(text(sql), {"o": org})
            assert "permission denied" in str(refused.value.orig), sql
    finally:
        app.dispose()
    with owner_engine.connect() as conn:
        assert tuple(conn.execute(count, {"o": org}).one()) == before
