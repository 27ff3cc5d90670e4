"""Delivery of the outbox, and the 24-hour reminders.

Delivery: per organization (one tenant transaction each), due pending rows are claimed with
FOR UPDATE SKIP LOCKED and leased until `locked_until` (a crashed sender's rows come back when the
lease ends), then sent outside any transaction, then marked: `sent` with the provider's message id,
or retried with exponential backoff and jitter (next_attempt_at = now + backoff * 2^attempts),
or `dead` (dead letter, visible to staff) after notification_max_attempts or a permanent failure.
Several workers may run this at once: a row is claimed by one of them only.

Reminders: 24 hours before its session, each confirmed booking gets one reminder (email, and SMS
when the organization turned `sms_reminders` on and the customer gave a phone); the booking's
reminder_sent_at is set in the same transaction as the outbox rows."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.bookings import links
from bookingtms.config import Settings, get_settings
from bookingtms.db.engine import DbContext, for_each_organization, organizations_with_work, tenant_transaction
from bookingtms.models import (
    activities,
    activity_sessions,
    bookings,
    customers,
    organizations,
    venues,
)
from bookingtms.notifications import delivery, render
from bookingtms.notifications import service as outbox

log = structlog.get_logger("bookingtms.notifications")

LEASE_SECONDS = 300  # longer than any one send may take (each send has a 30 s timeout)
MAX_DELAY_SECONDS = 24 * 3600
# Payload fields that must not outlive delivery (a temporary password, a reset link).
SECRETS = {"temporary_password", "reset_url"}

_CLAIM = text("""
    UPDATE notification_outbox o SET locked_until = now() + make_interval(secs => :lease)
      FROM (SELECT n.id FROM notification_outbox n
             WHERE n.organization_id = :org AND n.status = 'pending' AND n.next_attempt_at <= now()
               AND (n.locked_until IS NULL OR n.locked_until <= now())
             ORDER BY n.next_attempt_at, n.created_at
             LIMIT :batch
             FOR UPDATE SKIP LOCKED) due
     WHERE o.organization_id = :org AND o.id = due.id
    RETURNING o.id, o.kind, o.channel, o.recipient, o.payload, o.attempts, o.booking_id, o.locked_until
""")

_MARK_SENT = text("""
    UPDATE notification_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1, locked_until = NULL,
           last_error = NULL, provider_message_id = :provider_id, payload = CAST(:payload AS jsonb)
     WHERE organization_id = :org AND id = :id AND status = 'pending' AND locked_until = :lease
""")

_MARK_RETRY = text("""
    UPDATE notification_outbox SET attempts = attempts + 1, locked_until = NULL, last_error = :error,
           next_attempt_at = now() + make_interval(secs => :delay)
     WHERE organization_id = :org AND id = :id AND status = 'pending' AND locked_until = :lease
""")

_MARK_DEAD = text("""
    UPDATE notification_outbox SET status = 'dead', attempts = attempts + 1, locked_until = NULL, last_error = :error
     WHERE organization_id = :org AND id = :id AND status = 'pending' AND locked_until = :lease
""")


def backoff_delay(settings: Settings, attempts_before: int) -> float:
    """Seconds until the next attempt after a failure: backoff * 2^attempts, plus up to 25% jitter
    (so a burst of failures does not retry in lockstep)."""
    base = settings.notification_backoff_seconds * (2 ** min(attempts_before, 30))
    return min(MAX_DELAY_SECONDS, base * (1 + random.random() * 0.25))


# ---------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------
async def deliver_due(max_organizations: int = 1000, settings: Settings | None = None) -> int:
    """One round over every organization with due notifications; returns how many were sent."""
    sent = 0
    for org_id in await organizations_with_work("organizations_with_due_notifications(:n)", {"n": max_organizations}):
        try:
            sent += await deliver_for_organization(org_id, settings=settings)
        except Exception:  # one organization's trouble must not hold up the others
            log.exception("notification_delivery_failed", organization_id=str(org_id))
    return sent


async def claim(org_id: uuid.UUID, batch: int = 50) -> tuple[list[Any], dict[str, Any]]:
    """Leases up to `batch` due rows of the organization (committed before anything is sent)."""
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        rows = (await db.execute(_CLAIM, {"org": org_id, "batch": batch, "lease": LEASE_SECONDS})).all()
        org = (await db.execute(select(organizations.c.name, organizations.c.settings)
                                .where(organizations.c.id == org_id))).first()
    return rows, {"name": org.name if org else "", "settings": (org.settings if org else None) or {}}


async def deliver_for_organization(org_id: uuid.UUID, *, settings: Settings | None = None, batch: int = 50) -> int:
    settings = settings or get_settings()
    rows, org = await claim(org_id, batch)
    sent = 0
    for row in rows:
        try:
            provider_id = await _send(settings, org_id, org["name"], row)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
            permanent = isinstance(exc, render.UnknownKind) or getattr(exc, "permanent", False)
            await _failed(settings, org_id, row, f"{type(exc).__name__}: {exc}"[:2000], permanent)
            continue
        await _mark(_MARK_SENT, org_id, row, provider_id=provider_id[:500],
                    payload=_scrubbed(row.payload))
        sent += 1
    return sent


def _scrubbed(payload: dict[str, Any]) -> str:
    import json

    return json.dumps({k: ("[sent]" if k in SECRETS and v else v) for k, v in (payload or {}).items()},
                      default=str)


async def _mark(statement, org_id: uuid.UUID, row, **values) -> None:
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        await db.execute(statement, {"org": org_id, "id": row.id, "lease": row.locked_until, **values})


async def _failed(settings: Settings, org_id: uuid.UUID, row, error: str, permanent: bool) -> None:
    attempts = row.attempts + 1
    if permanent or attempts >= settings.notification_max_attempts:
        log.warning("notification_dead", organization_id=str(org_id), notification_id=str(row.id), kind=row.kind,
                    attempts=attempts, error=error)
        await _mark(_MARK_DEAD, org_id, row, error=error)
    else:
        await _mark(_MARK_RETRY, org_id, row, error=error, delay=backoff_delay(settings, row.attempts))


async def _send(settings: Settings, org_id: uuid.UUID, org_name: str, row) -> str:
    payload = dict(row.payload or {})
    if row.channel == "sms":
        return await delivery.send_sms(settings, row.id, row.recipient,
                                       render.render_sms(row.kind, payload, org_name))
    if row.channel != "email":
        raise delivery.DeliveryError(f"channel {row.channel!r} is not delivered by this job", permanent=True)
    attachments: list[tuple[str, str, bytes]] = []
    extra: dict[str, Any] = {}
    if row.kind == "booking_confirmation" and row.booking_id:
        details = await _booking_details(org_id, row.booking_id)
        if details is not None:
            extra["venue_address"] = details["venue_address"]
            attachments.append(("booking.ics", "text/calendar", _ics(details)))
            # The customer's signed link to their booking (view, add to calendar, cancel).
            extra["manage_url"] = links.manage_url(org_id, row.booking_id, details["email"])
    subject, text_body, html_body = render.render_email(row.kind, payload, org_name, extra)
    msg = delivery.build_email(settings, row.id, row.recipient, subject, text_body, html_body, attachments)
    return await delivery.send_email(settings, row.id, msg)


def _ics(details: dict[str, Any]) -> bytes:
    from bookingtms.calendars.ics import booking_calendar

    return booking_calendar(reference=details["reference"], activity_name=details["activity_name"],
                            venue_name=details["venue_name"], venue_address=details["venue_address"],
                            timezone=details["timezone"], start_time=details["start_time"],
                            end_time=details["end_time"], guests=details["guests"])


def _address(venue) -> str:
    return ", ".join(p for p in (venue.address, venue.city, venue.state, venue.zip, venue.country) if p)


def _details_query():
    b, s, v, a, c = bookings.c, activity_sessions.c, venues.c, activities.c, customers.c
    return (select(b.id, b.booking_reference.label("reference"), b.guest_count.label("guests"), s.start_time,
                   s.end_time, a.name.label("activity_name"), v.name.label("venue_name"), v.timezone, v.address,
                   v.city, v.state, v.zip, v.country, c.email, c.phone, c.first_name)
            .join_from(bookings, activity_sessions, and_(s.organization_id == b.organization_id, s.id == b.session_id))
            .join(venues, and_(v.organization_id == b.organization_id, v.id == b.venue_id))
            .join(activities, and_(a.organization_id == b.organization_id, a.id == b.activity_id))
            .join(customers, and_(c.organization_id == b.organization_id, c.id == b.customer_id)))


def _details(row) -> dict[str, Any]:
    item = dict(row._mapping)
    item["venue_address"] = _address(row)
    return item


async def _booking_details(org_id: uuid.UUID, booking_id: uuid.UUID) -> dict[str, Any] | None:
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        row = (await db.execute(_details_query().where(bookings.c.organization_id == org_id,
                                                       bookings.c.id == booking_id))).first()
    return _details(row) if row is not None else None


# ---------------------------------------------------------------------------------------------
# Reminders
# ---------------------------------------------------------------------------------------------
REMINDER_LEAD = timedelta(hours=24)

# Which bookings are due is bookings_due_reminder() (migration 0012), the same definition that
# organizations_with_reminders_due() uses to find the organizations this runs for. The booking is
# joined again to lock it; the status and reminder are checked again on the row as locked (a
# cancellation or another round may have committed since the search read it).
_TAKE_DUE_REMINDERS = text("""
    WITH due AS (
      SELECT b.id FROM bookings_due_reminder(:from, :until) d
        JOIN bookings b ON b.organization_id = d.organization_id AND b.id = d.booking_id
       WHERE d.organization_id = :org AND b.status = 'confirmed' AND b.reminder_sent_at IS NULL
       ORDER BY d.start_time
       LIMIT :batch
       FOR UPDATE OF b SKIP LOCKED)
    UPDATE bookings b SET reminder_sent_at = now()
      FROM due
     WHERE b.organization_id = :org AND b.id = due.id AND b.reminder_sent_at IS NULL
    RETURNING b.id
""")


async def queue_reminders(now: datetime | None = None, max_organizations: int = 1000, batch: int = 500) -> int:
    """Queues the reminders of bookings whose session starts within the next 24 hours; returns how
    many bookings were reminded."""
    now = now or datetime.now(UTC)
    until = now + REMINDER_LEAD
    return await for_each_organization("queue_reminders", "organizations_with_reminders_due(:f, :u, :n)",
                                       {"f": now, "u": until, "n": max_organizations},
                                       lambda db, org_id: queue_reminders_for(db, org_id, now, until, batch))


async def queue_reminders_for(db: AsyncConnection, org_id: uuid.UUID, now: datetime, until: datetime,
                              batch: int = 500) -> int:
    ids = (await db.execute(_TAKE_DUE_REMINDERS, {"org": org_id, "from": now, "until": until,
                                                  "batch": batch})).scalars().all()
    if not ids:
        return 0
    org_settings = (await db.execute(select(organizations.c.settings)
                                     .where(organizations.c.id == org_id))).scalar_one_or_none() or {}
    sms_on = str(org_settings.get("sms_reminders", "")).lower() == "true"
    rows = (await db.execute(_details_query().where(bookings.c.organization_id == org_id,
                                                    bookings.c.id.in_(ids)))).all()
    for row in rows:
        details = _details(row)
        payload = {"booking_id": str(row.id), "reference": row.reference, "activity": row.activity_name,
                   "venue": row.venue_name, "venue_address": details["venue_address"] or None,
                   "start_time": row.start_time.isoformat(), "timezone": row.timezone, "guests": row.guests,
                   "first_name": row.first_name}
        await outbox.enqueue(db, org_id, "reminder", row.email, payload, booking_id=row.id)
        if sms_on and row.phone:
            await outbox.enqueue(db, org_id, "reminder", row.phone, payload, channel="sms", booking_id=row.id)
    return len(rows)
