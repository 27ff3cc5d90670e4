"""The capacity invariant under random sequences of what customers, staff and the expiry job do.

Hypothesis draws a sequence of steps (hold, checkout, release, lapse a hold, run the expiry job,
staff cancel, customer cancel, staff booking, staff resizing a session) against two sessions of a fresh activity. After
every step the database must satisfy, for each session,

    capacity_remaining = capacity_total - spots of 'held' reservations - guests of non-cancelled bookings,
    0 <= capacity_remaining <= capacity_total,

customers' total_bookings / total_spent must equal their non-cancelled bookings, and every answer
must be the one a simple model of the rules predicts (a hold succeeds iff the spots are left,
checking out a lapsed or released hold is 410, cancelling twice is 409, ...)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from bookingtms.db.urls import owner_url
from bookingtms.reservations.jobs import expire_holds
from tests.factories import Tenant, make_tenant, today, unique

CAPACITY = 5
PRICE = 1500
CUSTOMERS = 3
SESSIONS = 2


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
@dataclass
class Hold:
    id: str
    session: int
    spots: int
    email: str
    state: str = "held"  # held | lapsed (expires_at passed, job not run yet) | released | expired | converted


@dataclass
class Booking:
    id: str
    reference: str
    session: int
    guests: int
    email: str
    total: int
    cancelled: bool = False


@dataclass
class Model:
    session_ids: list[str]
    emails: list[str]
    total: list[int] = field(default_factory=lambda: [CAPACITY] * SESSIONS)
    remaining: list[int] = field(default_factory=lambda: [CAPACITY] * SESSIONS)
    holds: list[Hold] = field(default_factory=list)
    bookings: list[Booking] = field(default_factory=list)

    def customer_totals(self, email: str) -> tuple[int, int]:
        live = [b for b in self.bookings if b.email == email and not b.cancelled]
        return len(live), sum(b.total for b in live)


# ------------------------------------------------------------------------------------------------
# Steps
# ------------------------------------------------------------------------------------------------
index = st.integers(min_value=0, max_value=30)  # picks among existing holds/bookings, modulo their number
session_index = st.integers(min_value=0, max_value=SESSIONS - 1)
party = st.integers(min_value=1, max_value=CAPACITY)
customer = st.integers(min_value=0, max_value=CUSTOMERS - 1)

hold_step = st.tuples(st.just("hold"), session_index, party, customer)
steps = st.lists(st.one_of(
    hold_step,
    hold_step,  # twice: holds feed checkouts, releases and lapses
    st.tuples(st.just("checkout"), index),
    st.tuples(st.just("checkout"), index),
    st.tuples(st.just("release"), index),
    st.tuples(st.just("lapse"), index),
    st.tuples(st.just("expire_job")),
    st.tuples(st.just("staff_cancel"), index),
    st.tuples(st.just("customer_cancel"), index),
    st.tuples(st.just("staff_book"), session_index, party, customer),
    st.tuples(st.just("resize"), session_index, st.integers(min_value=0, max_value=CAPACITY + 3), st.booleans()),
), min_size=4, max_size=20)


def _pick(items: list, i: int):
    return items[i % len(items)] if items else None


def _expect(response, status: int, code: str | None = None, context: str = "") -> None:
    assert response.status_code == status, f"{context}: expected {status}, got {response.status_code} {response.text}"
    if code is not None:
        assert response.json()["code"] == code, f"{context}: {response.text}"


async def apply(step: tuple, model: Model, client, shop: Tenant, owner) -> None:
    kind = step[0]
    widget = f"/v1/public/venues/{shop.embed_key}"
    if kind in ("hold", "staff_book"):
        _, s, spots, c = step
        email = model.emails[c]
        if kind == "hold":
            response = await client.post(f"{widget}/reservations", json={
                "session_id": model.session_ids[s], "spots": spots, "customer_email": email})
        else:
            response = await client.post("/v1/bookings", headers=shop.headers, json={
                "session_id": model.session_ids[s], "guest_count": spots,
                "customer": {"email": email, "first_name": "Staff", "last_name": "Booked"}})
        if spots > model.remaining[s]:
            _expect(response, 409, "sold_out", f"{step} with {model.remaining[s]} left")
            assert response.json()["capacity_remaining"] == model.remaining[s]
            return
        _expect(response, 201, None, f"{step} with {model.remaining[s]} left")
        model.remaining[s] -= spots
        body = response.json()
        if kind == "hold":
            assert body["spots"] == spots and body["session_id"] == model.session_ids[s]
            model.holds.append(Hold(id=body["reservation_id"], session=s, spots=spots, email=email))
        else:
            assert body["status"] == "confirmed" and body["guest_count"] == spots
            assert body["total_amount"] == spots * PRICE
            model.bookings.append(Booking(id=body["id"], reference=body["booking_reference"], session=s,
                                          guests=spots, email=email, total=spots * PRICE))
        return

    if kind in ("checkout", "release", "lapse"):
        hold = _pick(model.holds, step[1])
        if hold is None:
            return
        if kind == "lapse":
            if hold.state == "held":
                with owner.begin() as conn:
                    conn.execute(text("UPDATE slot_reservations SET expires_at = now() - interval '1 second' "
                                      "WHERE id = :id"), {"id": hold.id})
                hold.state = "lapsed"
            return
        if kind == "checkout":
            response = await client.post(f"{widget}/reservations/{hold.id}/checkout", json={
                "customer": {"email": hold.email, "first_name": "Bea", "last_name": "Buyer"}})
            context = f"{step} of a {hold.state} hold"
            if hold.state == "held":
                _expect(response, 201, None, context)
                booking = response.json()["booking"]
                assert booking["status"] == "confirmed" and booking["guest_count"] == hold.spots
                assert booking["total_amount"] == hold.spots * PRICE
                hold.state = "converted"
                model.bookings.append(Booking(id=booking["id"], reference=booking["reference"], session=hold.session,
                                              guests=hold.spots, email=hold.email, total=hold.spots * PRICE))
            elif hold.state == "converted":
                _expect(response, 409, "reservation_converted", context)
            else:
                _expect(response, 410, "reservation_expired", context)
            return
        response = await client.delete(f"{widget}/reservations/{hold.id}")
        context = f"{step} of a {hold.state} hold"
        if hold.state == "converted":
            _expect(response, 409, "reservation_converted", context)
        else:
            _expect(response, 204, None, context)
            if hold.state in ("held", "lapsed"):
                model.remaining[hold.session] += hold.spots
                hold.state = "released"
        return

    if kind == "resize":  # staff change capacity_total with If-Match (optimistic locking)
        _, s, new_total, stale = step
        session_id = model.session_ids[s]
        current = await client.get(f"/v1/sessions/{session_id}", headers=shop.headers)
        version = int(current.headers["etag"].strip('"'))
        response = await client.patch(f"/v1/sessions/{session_id}", json={"capacity_total": new_total},
                                      headers={**shop.headers, "If-Match": f'"{version - 1 if stale else version}"'})
        taken = model.total[s] - model.remaining[s]
        context = f"{step} with {taken} taken"
        if stale:
            _expect(response, 412, "version_conflict", context)
        elif new_total < taken:
            _expect(response, 409, "capacity_below_booked", context)
        else:
            _expect(response, 200, None, context)
            assert response.json()["capacity_total"] == new_total
            model.total[s], model.remaining[s] = new_total, new_total - taken
        return

    if kind == "expire_job":
        due = [h for h in model.holds if h.state == "lapsed"]
        returned = await expire_holds()
        assert returned >= sum(h.spots for h in due)  # (other tests' lapsed holds may be returned too)
        for h in due:
            model.remaining[h.session] += h.spots
            h.state = "expired"
        return

    if kind in ("staff_cancel", "customer_cancel"):
        booking = _pick(model.bookings, step[1])
        if booking is None:
            return
        if kind == "staff_cancel":
            response = await client.post(f"/v1/bookings/{booking.id}/cancel", headers=shop.headers,
                                         json={"refund": "policy"})
        else:
            response = await client.post(f"/v1/public/bookings/{booking.reference}/cancel",
                                         json={"email": booking.email})
        context = f"{step} of a {'cancelled' if booking.cancelled else 'live'} booking"
        if booking.cancelled:
            _expect(response, 409, "already_cancelled", context)
        else:
            _expect(response, 200, None, context)
            assert response.json()["status"] == "cancelled"
            booking.cancelled = True
            model.remaining[booking.session] += booking.guests
        return

    raise AssertionError(f"unknown step {step}")


# ------------------------------------------------------------------------------------------------
# The checks after every step
# ------------------------------------------------------------------------------------------------
_SESSIONS = text("""
    SELECT s.id::text, s.capacity_total, s.capacity_remaining,
           coalesce((SELECT sum(r.spots_reserved) FROM slot_reservations r
                      WHERE r.organization_id = s.organization_id AND r.session_id = s.id AND r.status = 'held'), 0) AS held,
           coalesce((SELECT sum(b.guest_count) FROM bookings b
                      WHERE b.organization_id = s.organization_id AND b.session_id = s.id AND b.status <> 'cancelled'), 0)
             AS booked
      FROM activity_sessions s WHERE s.id = ANY(CAST(:ids AS uuid[]))
""")

_CUSTOMERS = text("""
    SELECT c.email, c.total_bookings, c.total_spent, count(b.id) AS live, coalesce(sum(b.total_amount), 0) AS spent
      FROM customers c
      LEFT JOIN bookings b ON b.organization_id = c.organization_id AND b.customer_id = c.id AND b.status <> 'cancelled'
     WHERE c.organization_id = :org AND c.email = ANY(:emails)
     GROUP BY c.email, c.total_bookings, c.total_spent
""")


def check(model: Model, shop: Tenant, owner, after: str) -> None:
    with owner.connect() as conn:
        sessions = {r.id: r for r in conn.execute(_SESSIONS, {"ids": model.session_ids})}
        customers = {r.email: r for r in conn.execute(_CUSTOMERS, {"org": shop.organization_id,
                                                                   "emails": model.emails})}
    for i, session_id in enumerate(model.session_ids):
        s = sessions[session_id]
        assert s.capacity_remaining == s.capacity_total - s.held - s.booked, (
            f"after {after}: invariant broken on session {i}: remaining {s.capacity_remaining}, "
            f"total {s.capacity_total}, held {s.held}, booked {s.booked}")
        assert 0 <= s.capacity_remaining <= s.capacity_total, f"after {after}: {s}"
        assert s.capacity_total == model.total[i], f"after {after}: session {i} total {s.capacity_total}"
        assert s.capacity_remaining == model.remaining[i], (
            f"after {after}: session {i} has {s.capacity_remaining} left, the model says {model.remaining[i]}")
    for email in model.emails:
        expected = model.customer_totals(email)
        c = customers.get(email)
        if c is None:
            assert expected == (0, 0), f"after {after}: no customer row for {email} with bookings {expected}"
            continue
        assert (c.total_bookings, c.total_spent) == (c.live, c.spent), f"after {after}: customer totals drifted: {c}"
        assert (c.total_bookings, c.total_spent) == expected, f"after {after}: {c} but the model says {expected}"


# ------------------------------------------------------------------------------------------------
# Fixtures and the test
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def owner_db(settings):
    engine = create_engine(owner_url(settings), pool_size=1, max_overflow=1)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
async def shop(client, platform_admin) -> Tenant:
    return await make_tenant(client, platform_admin, timezone_name="UTC")


async def fresh_model(client, shop: Tenant) -> Model:
    """A new activity with exactly two sessions, three days from now."""
    day = (today() + timedelta(days=3)).isoformat()
    response = await client.post("/v1/activities", headers=shop.headers, json={
        "venue_id": shop.venue_id, "name": unique("prop"), "duration_minutes": 60, "capacity": CAPACITY,
        "min_players": 1, "max_players": CAPACITY, "price_amount": PRICE,
        "schedule": {"weekly": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "times": ["10:00", "14:00"]}],
                     "start_date": day, "end_date": day},
        "cancellation_policy": {"full_refund_hours": 24}})
    assert response.status_code == 201, response.text
    listed = await client.get("/v1/sessions", headers=shop.headers, params={"activity_id": response.json()["id"]})
    assert listed.status_code == 200, listed.text
    session_ids = [s["id"] for s in listed.json()["items"]]
    assert len(session_ids) == SESSIONS, listed.text
    run = uuid.uuid4().hex[:8]
    return Model(session_ids=session_ids, emails=[f"c{i}-{run}@example.com" for i in range(CUSTOMERS)])


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(script=steps)
async def test_capacity_invariant_holds_after_every_step(client, shop, owner_db, script):
    model = await fresh_model(client, shop)
    check(model, shop, owner_db, "setup")
    for n, step in enumerate(script, start=1):
        await apply(step, model, client, shop, owner_db)
        check(model, shop, owner_db, f"step {n} {step}")

    # What staff and the widget are shown agrees with the database.
    for i, session_id in enumerate(model.session_ids):
        shown = await client.get(f"/v1/sessions/{session_id}", headers=shop.headers)
        assert shown.status_code == 200 and shown.json()["capacity_remaining"] == model.remaining[i]
    day = (today() + timedelta(days=3)).isoformat()
    public = await client.get(f"/v1/public/venues/{shop.embed_key}/availability",
                              params={"from": day, "to": day})
    assert public.status_code == 200, public.text
    widget = {s["id"]: s["capacity_remaining"] for s in public.json()["sessions"]}
    for i, session_id in enumerate(model.session_ids):
        assert widget.get(session_id) == model.remaining[i], (session_id, widget)


async def test_staff_capacity_edit_survives_the_daily_schedule_job(client, shop, owner_db):
    """Staff cut a session to 3 spots (a room under repair); the next day's schedule job must not
    quietly give the 5 spots back. The activity is made due for the job as two days passing would
    make it (the job keeps a day's slack)."""
    from bookingtms.sessions.jobs import extend_horizons

    model = await fresh_model(client, shop)
    session_id = model.session_ids[0]
    current = await client.get(f"/v1/sessions/{session_id}", headers=shop.headers)
    edited = await client.patch(f"/v1/sessions/{session_id}", json={"capacity_total": 3},
                                headers={**shop.headers, "If-Match": current.headers["etag"]})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["capacity_total"], edited.json()["capacity_remaining"]) == (3, 3)

    with owner_db.begin() as conn:  # two days later, the activity's horizon is short
        conn.execute(text("UPDATE activities SET sessions_generated_until = sessions_generated_until - 2 "
                          "WHERE id = (SELECT activity_id FROM activity_sessions WHERE id = :s)"), {"s": session_id})
    await extend_horizons()

    after = await client.get(f"/v1/sessions/{session_id}", headers=shop.headers)
    assert (after.json()["capacity_total"], after.json()["capacity_remaining"]) == (3, 3), after.text
    response = await client.post(f"/v1/public/venues/{shop.embed_key}/reservations",
                                 json={"session_id": session_id, "spots": 4, "customer_email": "x@example.com"})
    assert response.status_code == 409 and response.json()["code"] == "sold_out", response.text
