"""Calendar feeds: a venue's secret feed token (stored as its SHA-256) and the bookings the
feed shows. The token is checked before the tenant is known, through the SECURITY DEFINER
lookup venue_by_calendar_token (an exact match on the hash: no timing signal about the token)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.calendars.ics import CalendarEntry
from bookingtms.db.engine import lookup_connection
from bookingtms.errors import NotFound
from bookingtms.models import activities, activity_sessions, bookings, customers, venues

FEED_PAST_DAYS = 30
FEED_MAX_EVENTS = 5000
FEED_STATUSES = ("confirmed", "pending_payment")  # cancelled bookings are left out: the feed is
# re-read whole by subscribers, so a booking that is cancelled simply disappears from their calendars.
MAX_TOKEN_LENGTH = 200


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


async def organization_for_token(venue_id: uuid.UUID, token: str | None) -> uuid.UUID | None:
    """The venue's organization when `token` is its current feed token (and the venue is not
    archived); None otherwise, whatever the reason."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    async with lookup_connection() as conn:
        return (await conn.execute(text("SELECT venue_by_calendar_token(:v, :h)"),
                                   {"v": venue_id, "h": hash_token(token)})).scalar_one_or_none()


async def rotate_token(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID) -> tuple[str, bool]:
    """A fresh token for the venue's feed; the previous one stops working when this commits.
    Returns (token, whether a token existed before)."""
    row = (await db.execute(
        select(venues.c.calendar_token_hash)
        .where(venues.c.organization_id == org_id, venues.c.id == venue_id, venues.c.status != "archived")
        .with_for_update())).first()
    if row is None:
        raise NotFound("No such venue.", code="venue_not_found")
    token = new_token()
    await db.execute(update(venues).where(venues.c.organization_id == org_id, venues.c.id == venue_id)
                     .values(calendar_token_hash=hash_token(token)))
    return token, row.calendar_token_hash is not None


async def feed_data(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID,
                    now: datetime | None = None) -> tuple[dict[str, Any], list[CalendarEntry]]:
    """The venue (name, address, time zone) and its live bookings whose session starts no more
    than FEED_PAST_DAYS ago, in session order."""
    v = venues.c
    venue = (await db.execute(select(v.name, v.timezone, v.address, v.city, v.state, v.zip, v.country).where(
        v.organization_id == org_id, v.id == venue_id, v.status != "archived"))).first()
    if venue is None:
        raise NotFound("No such calendar.", code="calendar_not_found")
    since = (now or datetime.now(UTC)) - timedelta(days=FEED_PAST_DAYS)
    b, c, s, a = bookings.c, customers.c, activity_sessions.c, activities.c
    rows = (await db.execute(
        select(b.booking_reference, b.status, b.guest_count, b.notes, b.updated_at, s.start_time, s.end_time,
               a.name.label("activity_name"), c.first_name, c.last_name)
        .join_from(bookings, activity_sessions, and_(s.organization_id == b.organization_id, s.id == b.session_id))
        .join(activities, and_(a.organization_id == b.organization_id, a.id == b.activity_id))
        .join(customers, and_(c.organization_id == b.organization_id, c.id == b.customer_id))
        .where(b.organization_id == org_id, b.venue_id == venue_id, b.status.in_(FEED_STATUSES),
               s.start_time >= since)
        .order_by(s.start_time, b.booking_reference)
        .limit(FEED_MAX_EVENTS))).all()
    entries = [CalendarEntry(
        reference=r.booking_reference, activity_name=r.activity_name, start_time=r.start_time, end_time=r.end_time,
        status="pending" if r.status == "pending_payment" else r.status,
        customer_name=" ".join(p for p in (r.first_name, r.last_name) if p) or None,
        guests=r.guest_count, updated_at=r.updated_at, notes=r.notes) for r in rows]
    address = ", ".join(p for p in (venue.address, venue.city, venue.state, venue.zip, venue.country) if p)
    return {"name": venue.name, "timezone": venue.timezone, "address": address}, entries
