"""Holds: a customer's spots kept for a short time while they check out."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.bookings import links
from bookingtms.bookings import service as bookings_service
from bookingtms.errors import Conflict, NotFound, ReservationExpired, ValidationFailed
from bookingtms.metrics import count_holds
from bookingtms.models import activity_sessions, slot_reservations, venues
from bookingtms.platform.limits import check_limit
from bookingtms.reservations.schemas import Checkout, HoldCreate
from bookingtms.sessions import service as sessions_service

_INSERT_HOLD = text("""
    INSERT INTO slot_reservations (organization_id, session_id, customer_email, spots_reserved, expires_at)
    VALUES (:org, :session, :email, :spots, now() + make_interval(secs => :ttl))
    RETURNING id, session_id, spots_reserved, expires_at
""")

# Expired holds give their spots back: one statement marks them and returns capacity per session.
_EXPIRE_DUE = text("""
    WITH due AS (
      SELECT id FROM slot_reservations
       WHERE organization_id = :org AND status = 'held' AND expires_at <= now()
       ORDER BY expires_at LIMIT :batch
       FOR UPDATE SKIP LOCKED
    ), expired AS (
      UPDATE slot_reservations r SET status = 'expired'
        FROM due WHERE r.organization_id = :org AND r.id = due.id
      RETURNING r.session_id, r.spots_reserved
    ), per_session AS (
      SELECT session_id, sum(spots_reserved)::int AS spots FROM expired GROUP BY session_id
    )
    UPDATE activity_sessions s
       SET capacity_remaining = s.capacity_remaining + per_session.spots, version = s.version + 1
      FROM per_session WHERE s.organization_id = :org AND s.id = per_session.session_id
    RETURNING per_session.spots, s.venue_id
""")


@count_holds
async def hold(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID, data: HoldCreate,
               ttl_seconds: int) -> dict[str, Any]:
    session = await sessions_service.bookable_session(db, org_id, data.session_id, venue_id)
    sessions_service.check_party_size(session, data.spots, "spots")
    # The month's bookings against the plan's max_bookings. Holds already taken may still be checked
    # out (a customer mid-checkout is not turned away), so a month can end over the limit by the
    # holds that were live when it was reached.
    await check_limit(db, org_id, "bookings_per_month", lock=False)
    await sessions_service.take_capacity(db, org_id, session, data.spots)
    row = (await db.execute(_INSERT_HOLD, {"org": org_id, "session": session.id, "email": data.customer_email,
                                           "spots": data.spots, "ttl": ttl_seconds})).one()
    return {"reservation_id": row.id, "session_id": row.session_id, "spots": row.spots_reserved,
            "expires_at": row.expires_at}


def _locked_query():
    r, s = slot_reservations.c, activity_sessions.c
    return (
        select(r.id, r.session_id, r.spots_reserved, r.status, r.booking_id, s.venue_id,
               (r.expires_at <= text("now()")).label("lapsed"))
        .join_from(slot_reservations, activity_sessions, and_(s.organization_id == r.organization_id, s.id == r.session_id))
        .where(r.organization_id == bindparam("org_id"), r.id == bindparam("reservation_id"))
        .with_for_update(of=slot_reservations)
    )


# The checkout's statements, built once (SQLAlchemy memoizes a statement's cache key).
_LOCKED = _locked_query()
_SET_STATUS = update(slot_reservations).where(slot_reservations.c.organization_id == bindparam("org_id"),
                                              slot_reservations.c.id == bindparam("reservation_id"))
_REQUIRE_PHONE = select(venues.c.settings["require_phone"].astext).where(
    venues.c.organization_id == bindparam("org_id"), venues.c.id == bindparam("venue_id"))


async def _locked(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID, reservation_id: uuid.UUID):
    row = (await db.execute(_LOCKED, {"org_id": org_id, "reservation_id": reservation_id})).first()
    if row is None or row.venue_id != venue_id:
        raise NotFound("No such reservation.", code="reservation_not_found")
    return row


async def release(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID, reservation_id: uuid.UUID) -> None:
    """Gives the spots back at once. Releasing twice, or after expiry, changes nothing."""
    row = await _locked(db, org_id, venue_id, reservation_id)
    if row.status == "converted":
        raise Conflict("This reservation is already a booking; cancel the booking instead.", code="reservation_converted")
    if row.status != "held":
        return
    await db.execute(_SET_STATUS, {"org_id": org_id, "reservation_id": reservation_id, "status": "released"})
    await sessions_service.return_capacity(db, org_id, row.session_id, row.spots_reserved)


async def _phone_required(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID) -> bool:
    """The venue's setting `require_phone` (its widget asks for a phone number as required)."""
    value = (await db.execute(_REQUIRE_PHONE, {"org_id": org_id, "venue_id": venue_id})).scalar_one_or_none()
    return str(value).strip().lower() in ("1", "true", "yes", "on")


async def checkout(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID, reservation_id: uuid.UUID,
                   data: Checkout) -> dict[str, Any]:
    """Turns a live hold into a booking in this one transaction; its capacity moves from the hold
    to the booking without ever being free in between. With the offline provider the booking is
    confirmed; with Stripe it is `pending_payment` (still holding the capacity) and the response
    carries the Checkout Session's URL. A Stripe organization that cannot take charges -> 409
    `payments_unavailable`, and the hold stays as it was."""
    row = await _locked(db, org_id, venue_id, reservation_id)
    if row.status == "converted":
        raise Conflict("This reservation has already been checked out.", code="reservation_converted")
    if row.status != "held" or row.lapsed:
        raise ReservationExpired("The hold on these spots has ended; please choose again.")
    session = await sessions_service.bookable_session(db, org_id, row.session_id)
    if not data.customer.phone and await _phone_required(db, org_id, venue_id):
        message = "This venue needs a phone number to reach you on the day."
        raise ValidationFailed(message, code="phone_required", field="customer.phone",
                               errors=[{"field": "customer.phone", "message": message}])
    result = await bookings_service.create_booking(db, org_id, session, guests=row.spots_reserved,
                                                   customer=data.customer, source="widget",
                                                   reservation_id=reservation_id, promo_code=data.promo_code,
                                                   online_payment=True)
    await db.execute(_SET_STATUS, {"org_id": org_id, "reservation_id": reservation_id, "status": "converted",
                                   "booking_id": result["booking"]["id"]})
    # The customer's signed link to view, add to a calendar or cancel the booking (web/portal.py).
    result["manage_url"] = links.manage_url(org_id, result["booking"]["id"], data.customer.email)
    return result


async def expire_due(db: AsyncConnection, org_id: uuid.UUID, batch: int = 500) -> int:
    """Job step: expires this organization's lapsed holds; returns the spots given back."""
    rows = (await db.execute(_EXPIRE_DUE, {"org": org_id, "batch": batch})).all()
    sessions_service.capacity_changed(db, *{r.venue_id for r in rows})
    return sum(r.spots for r in rows)
