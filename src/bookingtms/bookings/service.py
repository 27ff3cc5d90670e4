"""Bookings: created from a hold (checkout) or by staff, cancelled by staff or the customer.
Every capacity change goes through sessions.service.take_capacity / return_capacity."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.customers import service as customers_service
from bookingtms.config import get_settings
from bookingtms.customers.schemas import CustomerIn
from bookingtms.db.engine import as_dicts
from bookingtms.errors import Conflict, NotFound, ValidationFailed
from bookingtms.http.pagination import keyset, page
from bookingtms.metrics import BOOKINGS
from bookingtms.models import activities, activity_sessions, bookings, customers, venues
from bookingtms.notifications import service as notifications
from bookingtms.payments import providers
from bookingtms.payments import service as payments_service
from bookingtms.platform.limits import check_limit
from bookingtms.realtime.hub import BOOKING_CHANNEL
from bookingtms.sessions import service as sessions_service

REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: easy to read out on the phone


def new_reference() -> str:
    chars = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(10))
    return f"{chars[:5]}-{chars[5:]}"


_INSERT_BOOKING = text("""
    INSERT INTO bookings (organization_id, venue_id, activity_id, session_id, customer_id, reservation_id,
                          booking_reference, status, payment_status, source, booking_date, guest_count,
                          unit_price_amount, subtotal_amount, promo_code, promo_discount, total_amount, currency,
                          cancellation_policy, notes, created_by, payment_expires_at)
    VALUES (:org, :venue, :activity, :session, :customer, :reservation, :reference, :status, :payment_status, :source,
            :booking_date, :guests, :unit_price, :subtotal, :promo_code, :discount, :total, :currency,
            CAST(:policy AS jsonb), :notes, :created_by, :payment_expires_at)
    ON CONFLICT (organization_id, booking_reference) DO NOTHING
    RETURNING id, booking_reference, status, guest_count, total_amount, currency
""")

_REDEEM_PROMO = text("""
    UPDATE promo_codes SET times_redeemed = times_redeemed + 1
     WHERE organization_id = :org AND code = :code AND is_active
       AND (valid_from IS NULL OR valid_from <= now()) AND (valid_until IS NULL OR valid_until > now())
       AND (max_redemptions IS NULL OR times_redeemed < max_redemptions)
       AND (cardinality(activity_ids) = 0 OR :activity = ANY(activity_ids))
       AND (discount_type = 'percent' OR currency IS NULL OR currency = :currency)
    RETURNING discount_type, discount_value
""")


async def _redeem_promo(db: AsyncConnection, org_id: uuid.UUID, code: str, session, subtotal: int) -> int:
    """Redeems one use of the code in one conditional UPDATE (no race can overspend it) and
    returns the discount in minor units."""
    row = (await db.execute(_REDEEM_PROMO, {"org": org_id, "code": code.strip().upper(),
                                            "activity": session.activity_id, "currency": session.currency})).first()
    if row is None:
        raise ValidationFailed("This promo code is not valid for this booking.", code="promo_code_invalid",
                               field="promo_code")
    if row.discount_type == "percent":
        return subtotal * row.discount_value // 100
    return min(subtotal, row.discount_value)


async def create_booking(db: AsyncConnection, org_id: uuid.UUID, session, *, guests: int, customer: CustomerIn,
                         source: str, reservation_id: uuid.UUID | None = None, created_by: uuid.UUID | None = None,
                         notes: str | None = None, promo_code: str | None = None,
                         online_payment: bool = False) -> dict[str, Any]:
    """Writes a booking whose capacity has already been taken. Totals come from the session's
    price, never from the client. With `online_payment` (the widget's checkout) the organization's
    provider takes the payment: `offline` confirms at once; `stripe` leaves the booking
    `pending_payment` (still holding its capacity) until the payment webhook, or until
    `payment_expires_at` releases it. Staff bookings are always offline (paid at the venue)."""
    import json

    provider = providers.OFFLINE
    org = await providers.organization(db, org_id)
    if online_payment:
        provider = providers.provider_named(org.payment_provider)
        if provider is providers.STRIPE:
            provider.check_available(org)  # 409 payments_unavailable before anything is written
    pending = not provider.confirms_at_checkout
    expires_at = (datetime.now(timezone.utc) + timedelta(minutes=get_settings().stripe_checkout_minutes)
                  if pending else None)
    subtotal = session.price_at_generation * guests
    discount = await _redeem_promo(db, org_id, promo_code, session, subtotal) if promo_code else 0
    total = subtotal - discount
    customer_id = await customers_service.record_booking(db, org_id, customer, total)
    params = {
        "org": org_id, "venue": session.venue_id, "activity": session.activity_id, "session": session.id,
        "customer": customer_id, "reservation": reservation_id, "source": source, "booking_date": session.local_date,
        "guests": guests, "unit_price": session.price_at_generation, "subtotal": subtotal,
        "promo_code": promo_code.strip().upper() if promo_code else None, "discount": discount, "total": total,
        "currency": session.currency, "policy": json.dumps(session.cancellation_policy), "notes": notes,
        "created_by": created_by, "status": "pending_payment" if pending else "confirmed",
        "payment_status": "pending" if pending else "unpaid", "payment_expires_at": expires_at,
    }
    for _ in range(5):  # a reference already used in this organization is simply drawn again
        booking = (await db.execute(_INSERT_BOOKING, {**params, "reference": new_reference()})).first()
        if booking is not None:
            break
    else:  # pragma: no cover - 32^10 references make five collisions in a row unthinkable
        raise Conflict("Could not allocate a booking reference; please retry.", code="retry")
    payment = await provider.start_checkout(db, org, providers.CheckoutRequest(
        booking_id=booking.id, reference=booking.booking_reference, amount=total, currency=session.currency,
        description=f"{session.activity_name}, {session.start_time.isoformat()} ({guests} guests)",
        customer_email=customer.email, expires_at=expires_at or datetime.now(timezone.utc)))
    result = {"booking": {"id": booking.id, "reference": booking.booking_reference,
                          "booking_reference": booking.booking_reference, "status": booking.status,
                          "guest_count": booking.guest_count, "subtotal_amount": subtotal,
                          "promo_code": params["promo_code"], "promo_discount": discount,
                          "total_amount": booking.total_amount, "currency": booking.currency},
              "payment": payment}
    BOOKINGS.labels(booking.status).inc()
    if pending:
        return result  # confirmed (and the confirmation sent) when the payment arrives
    await notifications.enqueue(db, org_id, "booking_confirmation", customer.email, {
        "booking_id": str(booking.id), "reference": booking.booking_reference, "activity": session.activity_name,
        "venue": session.venue_name, "start_time": session.start_time.isoformat(), "timezone": session.timezone,
        "guests": guests, "total_amount": total, "currency": session.currency,
        "first_name": customer.first_name})
    return result


async def staff_booking(db: AsyncConnection, org_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID,
                        guests: int, customer: CustomerIn, notes: str | None) -> dict[str, Any]:
    session = await sessions_service.bookable_session(db, org_id, session_id)
    sessions_service.check_party_size(session, guests, "guest_count")
    await check_limit(db, org_id, "bookings_per_month")  # 403 plan_limit_reached at the plan's max_bookings
    await sessions_service.take_capacity(db, org_id, session, guests)
    result = await create_booking(db, org_id, session, guests=guests, customer=customer, source="staff",
                                  created_by=user_id, notes=notes)
    return await get_booking(db, org_id, result["booking"]["id"])


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def _detail_query():
    b, c, s, a = bookings.c, customers.c, activity_sessions.c, activities.c
    return (
        # `reference` beside the column's own name: the checkout answer (API.md) calls it that.
        select(bookings, b.booking_reference.label("reference"), c.email.label("customer_email"),
               c.first_name.label("customer_first_name"), c.last_name.label("customer_last_name"),
               c.phone.label("customer_phone"), s.start_time, s.end_time, a.name.label("activity_name"))
        .join_from(bookings, customers, and_(c.organization_id == b.organization_id, c.id == b.customer_id))
        .join(activity_sessions, and_(s.organization_id == b.organization_id, s.id == b.session_id))
        .join(activities, and_(a.organization_id == b.organization_id, a.id == b.activity_id))
    )


# The hot single-booking reads, built once: SQLAlchemy memoizes a statement's cache key, so running
# the same object skips building the select and its key on every request (about a tenth of a
# worker's time in the benchmark's profile went to that).
_BY_ID = _detail_query().where(bookings.c.organization_id == bindparam("org_id"), bookings.c.id == bindparam("booking_id"))
_BY_REFERENCE = _detail_query().where(bookings.c.organization_id == bindparam("org_id"),
                                      bookings.c.booking_reference == bindparam("reference"))
_BY_REFERENCE_AND_EMAIL = _BY_REFERENCE.where(customers.c.email == bindparam("email"))


async def get_booking(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID) -> dict[str, Any]:
    row = (await db.execute(_BY_ID, {"org_id": org_id, "booking_id": booking_id})).first()
    if row is None:
        raise NotFound("No such booking.", code="booking_not_found")
    return dict(row._mapping)


async def get_by_reference(db: AsyncConnection, org_id: uuid.UUID, reference: str,
                           email: str | None = None) -> dict[str, Any]:
    params = {"org_id": org_id, "reference": reference.strip().upper()}
    if email is None:
        row = (await db.execute(_BY_REFERENCE, params)).first()
    else:
        row = (await db.execute(_BY_REFERENCE_AND_EMAIL, {**params, "email": email.strip().lower()})).first()
    if row is None:
        raise NotFound("No booking has this reference" + (" and email." if email is not None else "."),
                       code="booking_not_found")
    return dict(row._mapping)


def _filtered(query, org_id: uuid.UUID, *, date_from, date_to, status: str | None, venue_id: uuid.UUID | None,
              activity_id: uuid.UUID | None, q: str | None, customer_id: uuid.UUID | list[uuid.UUID] | None = None):
    """The list's filters (shared by the list and the CSV export)."""
    b, c = bookings.c, customers.c
    query = query.where(b.organization_id == org_id)
    if isinstance(customer_id, list):  # some customers' bookings (idx_bookings_customer)
        query = query.where(b.customer_id.in_(customer_id))
    elif customer_id:  # a customer's history
        query = query.where(b.customer_id == customer_id)
    # A date is the session's local day (booking_date); a time bounds the session's start, with
    # the local days around it (a day either side covers every zone) for the index.
    if isinstance(date_from, datetime):
        query = query.where(activity_sessions.c.start_time >= date_from,
                            b.booking_date >= date_from.astimezone(timezone.utc).date() - timedelta(days=1))
    elif date_from:
        query = query.where(b.booking_date >= date_from)
    if isinstance(date_to, datetime):
        query = query.where(activity_sessions.c.start_time < date_to,
                            b.booking_date <= date_to.astimezone(timezone.utc).date() + timedelta(days=1))
    elif date_to:
        query = query.where(b.booking_date <= date_to)
    if status:
        query = query.where(b.status == status)
    if venue_id:
        query = query.where(b.venue_id == venue_id)
    if activity_id:
        query = query.where(b.activity_id == activity_id)
    if q:
        term = q.strip()
        like = f"%{term.lower()}%"
        # The matching customers are found once, among the organization's own (not looked up
        # booking by booking: on a tenant's whole history that was one index lookup per booking).
        matching = select(c.id).where(c.organization_id == org_id, or_(
            c.email.like(like), func.lower(c.first_name + " " + c.last_name).like(like)))
        query = query.where(or_(b.booking_reference == term.upper(), b.customer_id.in_(matching)))
    return query


async def list_bookings(db: AsyncConnection, org_id: uuid.UUID, *, date_from, date_to, status: str | None,
                        venue_id: uuid.UUID | None, activity_id: uuid.UUID | None, q: str | None, limit: int,
                        after: list | None, customer_id: uuid.UUID | list[uuid.UUID] | None = None) -> dict[str, Any]:
    b = bookings.c
    query = _filtered(_detail_query(), org_id, date_from=date_from, date_to=date_to, status=status,
                      venue_id=venue_id, activity_id=activity_id, q=q, customer_id=customer_id)
    if (key := keyset(after, datetime)):
        query = query.where(func.row(b.created_at, b.id) < func.row(*key))
    rows = as_dicts(await db.execute(query.order_by(b.created_at.desc(), b.id.desc()).limit(limit + 1)))
    return page(rows, limit, lambda r: (r["created_at"].isoformat(), str(r["id"])))


async def session_bookings(db: AsyncConnection, org_id: uuid.UUID, session_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every booking of one session (cancelled ones too), oldest first: the staff session page."""
    b = bookings.c
    return as_dicts(await db.execute(_detail_query().where(b.organization_id == org_id, b.session_id == session_id)
                                     .order_by(b.created_at, b.id).limit(1000)))


async def list_for_sessions(db: AsyncConnection, org_id: uuid.UUID, session_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """Every booking of these sessions, oldest first (the staff's day view; idx_bookings_org_session)."""
    if not session_ids:
        return []
    b = bookings.c
    return as_dicts(await db.execute(_detail_query().where(b.organization_id == org_id, b.session_id.in_(session_ids))
                                     .order_by(b.created_at, b.id)))


EXPORT_COLUMNS = ("reference", "date", "start_time", "end_time", "timezone", "venue", "activity", "guests",
                  "total_amount", "refund_amount", "currency", "status", "payment_status", "checked_in",
                  "customer_name", "customer_email", "customer_phone", "booked_at")


def _cell(value) -> str:
    """Text a spreadsheet would run as a formula is quoted (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _export_values(b: dict) -> list:
    return [b["booking_reference"], b["local_start"].date().isoformat(), b["local_start"].strftime("%H:%M"),
            b["local_end"].strftime("%H:%M"), b["timezone"], _cell(b["venue_name"]), _cell(b["activity_name"]),
            b["guest_count"], b["total_amount"], b["refund_amount"], b["currency"], b["status"], b["payment_status"],
            "yes" if b["checked_in_at"] else "no",
            _cell(f"{b['customer_first_name']} {b['customer_last_name']}".strip()), _cell(b["customer_email"]),
            b["customer_phone"] or "", b["created_at"].isoformat()]


def csv_response(ctx, org_id: uuid.UUID, filters: dict[str, Any], given: dict[str, Any]):
    """The export as a streamed CSV download (the API's GET /v1/bookings/export.csv and the staff
    dashboard's export): read from the replica in batches; audited as `bookings.exported` with
    the filter and the number of rows, also when the download broke off after rows had left."""
    import csv
    import io

    import anyio
    from starlette.responses import StreamingResponse

    from bookingtms.audit.service import record_alone
    from bookingtms.db.engine import read_transaction

    async def stream():
        rows, completed = 0, False
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        try:
            writer.writerow(EXPORT_COLUMNS)
            yield buffer.getvalue().encode()
            # Read from the replica (an export may lag a moment); the audit row goes to the primary.
            async with read_transaction(ctx) as db:
                async for batch in export_rows(db, org_id, **filters):
                    buffer.seek(0)
                    buffer.truncate()
                    for booking in batch:
                        writer.writerow(_export_values(booking))
                    rows += len(batch)
                    yield buffer.getvalue().encode()
            completed = True
        finally:
            if completed or rows:  # a download that broke off after rows had left is recorded too
                with anyio.CancelScope(shield=True):
                    await record_alone("bookings.exported", organization_id=org_id, target_type="booking",
                                       changes={"filter": given, "rows": rows, "format": "csv",
                                                **({} if completed else {"completed": False})})

    filename = f"bookings-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.csv"
    return StreamingResponse(stream(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store"})


async def export_rows(db: AsyncConnection, org_id: uuid.UUID, *, batch: int = 500, **filters) -> AsyncIterator[list[dict]]:
    """The list's bookings (same filters) in session order, in batches, with start and end times
    in the venue's time zone. Streams from a server-side cursor: the caller's transaction must stay
    open while it is consumed."""
    b, s, v = bookings.c, activity_sessions.c, venues.c
    query = _filtered(
        _detail_query().add_columns(v.name.label("venue_name"), v.timezone)
        .join(venues, and_(v.organization_id == b.organization_id, v.id == b.venue_id)), org_id, **filters,
    ).order_by(s.start_time, b.booking_reference).execution_options(yield_per=batch)
    result = await db.stream(query)
    async for rows in result.partitions(batch):
        out = []
        for row in rows:
            item = dict(row._mapping)
            zone = ZoneInfo(item["timezone"])
            item["local_start"] = item["start_time"].astimezone(zone)
            item["local_end"] = item["end_time"].astimezone(zone)
            out.append(item)
        yield out


# --------------------------------------------------------------------------------------------
# Cancelling and checking in
# --------------------------------------------------------------------------------------------
def refund_percent(policy: dict, start_time: datetime, mode: str, now: datetime) -> int:
    """`policy`: the activity's policy as agreed at booking (the booking's snapshot): a full refund
    up to `full_refund_hours` before the start; `partial_refund_percent` % up to
    `partial_refund_hours` before it (a second, later window, if the policy has one); none after.
    Staff may override with full/none."""
    if mode == "full":
        return 100
    if mode == "none":
        return 0
    hours_before = (start_time - now).total_seconds() / 3600
    if hours_before >= float(policy.get("full_refund_hours", 24)):
        return 100
    partial_hours, partial_percent = policy.get("partial_refund_hours"), policy.get("partial_refund_percent")
    if partial_hours is not None and partial_percent and hours_before >= float(partial_hours):
        return int(partial_percent)
    return 0


def percent_of(amount: int, percent: int) -> int:
    """`percent` % of `amount` minor units, rounded half up."""
    return int((Decimal(amount) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def refund_total(charge, *, total_amount: int, payment_status: str, refunded: int, percent: int) -> int:
    """What a booking has had refunded in all once cancelled at `percent`, as cancel_booking
    reaches it: of a paid charge, the policy's share of the whole charge (never less than what was
    refunded already); of a booking marked paid without a charge, the share of its total; of an
    unpaid booking, nothing more."""
    if charge is not None and charge.status == "succeeded":
        return min(max(percent_of(charge.amount, percent), charge.refunded_amount), total_amount)
    if payment_status == "paid":
        return percent_of(total_amount, percent)
    return refunded


async def refund_preview(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID,
                         now: datetime | None = None) -> dict[str, dict[str, int]]:
    """For each refund mode staff may choose (policy, full, none): the percentage and the amount
    cancelling now would give back (`refund`, on top of anything refunded before; `total`, in all)."""
    booking = await get_booking(db, org_id, booking_id)
    charge = await payments_service.charge_for_booking(db, org_id, booking_id, lock=False)
    now = now or datetime.now(timezone.utc)
    refunded = booking["refund_amount"] or 0
    preview = {}
    for mode in ("policy", "full", "none"):
        percent = refund_percent(booking["cancellation_policy"], booking["start_time"], mode, now)
        total = refund_total(charge, total_amount=booking["total_amount"], payment_status=booking["payment_status"],
                             refunded=refunded, percent=percent)
        preview[mode] = {"percent": percent, "refund": max(total - refunded, 0), "total": total}
    return preview


_LOCK_BOOKING = (
    select(bookings.c.id, bookings.c.status, bookings.c.session_id, bookings.c.customer_id, bookings.c.guest_count,
           bookings.c.total_amount, bookings.c.payment_status, bookings.c.refund_amount, bookings.c.cancel_reason,
           bookings.c.cancelled_by, bookings.c.cancellation_policy, bookings.c.booking_reference,
           bookings.c.currency, bookings.c.attention)
)


async def _lock_booking(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID):
    return (await db.execute(_LOCK_BOOKING.where(bookings.c.organization_id == org_id, bookings.c.id == booking_id)
                             .with_for_update())).first()


def _payment_status_of(charge, fallback: str) -> str:
    if charge is None or charge.status != "succeeded":
        return fallback
    if charge.refunded_amount >= charge.amount and charge.amount > 0:
        return "refunded"
    return "partially_refunded" if charge.refunded_amount > 0 else "paid"


async def sync_payment_state(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID) -> None:
    """Keeps the booking's refund_amount and payment_status equal to what its charge says."""
    charge = await payments_service.charge_for_booking(db, org_id, booking_id, lock=False)
    if charge is None:
        return
    row = await _lock_booking(db, org_id, booking_id)
    await db.execute(update(bookings).where(bookings.c.organization_id == org_id, bookings.c.id == booking_id).values(
        refund_amount=min(charge.refunded_amount, row.total_amount),
        payment_status=_payment_status_of(charge, row.payment_status)))


async def cancel_booking(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID, *, cancelled_by: str,
                         refund: str = "policy", reason: str | None = None,
                         forbid_after_start: bool = False) -> dict[str, Any]:
    """Cancels once: the row lock makes a concurrent second cancel see the first's result. What
    was paid is refunded through the charge's provider by the policy's percentage (rounded half
    up), with the platform fee refunded in proportion; if the provider fails nothing changes."""
    b, s = bookings.c, activity_sessions.c
    row = (await db.execute(
        select(b.id, b.status, b.session_id, b.customer_id, b.guest_count, b.total_amount, b.payment_status,
               b.refund_amount, b.cancellation_policy, b.booking_reference, b.currency, s.start_time,
               customers.c.email)
        .join_from(bookings, activity_sessions, and_(s.organization_id == b.organization_id, s.id == b.session_id))
        .join(customers, and_(customers.c.organization_id == b.organization_id, customers.c.id == b.customer_id))
        .where(b.organization_id == org_id, b.id == booking_id).with_for_update(of=bookings)
    )).first()
    if row is None:
        raise NotFound("No such booking.", code="booking_not_found")
    if row.status == "cancelled":
        raise Conflict("This booking is already cancelled.", code="already_cancelled")
    now = datetime.now(timezone.utc)
    if forbid_after_start and row.start_time <= now:
        raise Conflict("The session has started; ask the venue.", code="session_started")
    percent = refund_percent(row.cancellation_policy, row.start_time, refund, now)
    charge = await payments_service.charge_for_booking(db, org_id, booking_id)
    refund_amount = row.refund_amount or 0
    payment_status = row.payment_status
    if charge is not None and charge.status == "succeeded":
        # What the policy grants of the whole charge, less what was refunded already.
        wanted = percent_of(charge.amount, percent) - charge.refunded_amount
        if wanted > 0:
            provider = providers.provider_named(charge.provider)
            org = await providers.organization(db, org_id)
            await provider.refund(db, org, charge, wanted, f"bookingtms-refund-{booking_id}-cancel")
            charge = await payments_service.charge_for_booking(db, org_id, booking_id)
        refund_amount = min(charge.refunded_amount, row.total_amount)
        payment_status = _payment_status_of(charge, payment_status)
    elif row.payment_status == "paid":  # paid without a charge record (marked by hand): recorded only
        refund_amount = percent_of(row.total_amount, percent)
        if refund_amount:
            payment_status = "refunded" if refund_amount == row.total_amount else "partially_refunded"
    elif charge is not None and charge.status == "pending" and charge.stripe_checkout_session_id:
        # Nobody can pay for it any more (a payment already under way is refunded on arrival).
        await providers.STRIPE.cancel_checkout(await providers.organization(db, org_id), charge)
    if row.status == "pending_payment":
        payment_status = "unpaid"
    policy = {**row.cancellation_policy, "applied": {
        "mode": refund, "refund_percent": percent, "cancelled_at": now.isoformat(),
        "hours_before_start": round((row.start_time - now).total_seconds() / 3600, 2)}}
    await db.execute(update(bookings).where(b.organization_id == org_id, b.id == booking_id).values(
        status="cancelled", cancelled_at=func.now(), cancel_reason=reason, cancelled_by=cancelled_by,
        refund_amount=refund_amount, cancellation_policy=policy, payment_status=payment_status))
    await sessions_service.return_capacity(db, org_id, row.session_id, row.guest_count)
    await customers_service.record_cancellation(db, org_id, row.customer_id, row.total_amount)
    await payments_service.void_pending(db, org_id, booking_id)
    await notifications.enqueue(db, org_id, "booking_cancellation", row.email, {
        "booking_id": str(booking_id), "reference": row.booking_reference, "refund_amount": refund_amount,
        "currency": row.currency, "refund_percent": percent})
    return await get_booking(db, org_id, booking_id)


# --------------------------------------------------------------------------------------------
# Online payments: a pending_payment booking is paid, or released when its payment lapses
# --------------------------------------------------------------------------------------------
PAYMENT_EXPIRED = "payment_expired"


async def release_unpaid(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID) -> bool:
    """Releases a booking whose payment did not arrive in time: cancelled by the system (reason
    `payment_expired`), capacity returned, customer totals lowered. False if it was not pending."""
    row = await _lock_booking(db, org_id, booking_id)
    if row is None or row.status != "pending_payment":
        return False
    await db.execute(update(bookings).where(bookings.c.organization_id == org_id, bookings.c.id == booking_id).values(
        status="cancelled", cancelled_at=func.now(), cancel_reason=PAYMENT_EXPIRED, cancelled_by="system",
        payment_status="unpaid"))
    await sessions_service.return_capacity(db, org_id, row.session_id, row.guest_count)
    await customers_service.record_cancellation(db, org_id, row.customer_id, row.total_amount)
    await payments_service.void_pending(db, org_id, booking_id)
    return True


async def release_lapsed(db: AsyncConnection, org_id: uuid.UUID, batch: int = 200) -> int:
    """Job step: releases this organization's pending payments whose time has passed."""
    b = bookings.c
    ids = (await db.execute(select(b.id).where(
        b.organization_id == org_id, b.status == "pending_payment", b.payment_expires_at <= func.now())
        .order_by(b.payment_expires_at).limit(batch).with_for_update(skip_locked=True))).scalars().all()
    return sum([await release_unpaid(db, org_id, booking_id) for booking_id in ids])


async def _enqueue_confirmation(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID) -> None:
    booking = await get_booking(db, org_id, booking_id)
    session = await sessions_service.bookable_session(db, org_id, booking["session_id"])
    await notifications.enqueue(db, org_id, "booking_confirmation", booking["customer_email"], {
        "booking_id": str(booking_id), "reference": booking["booking_reference"], "activity": session.activity_name,
        "venue": session.venue_name, "start_time": session.start_time.isoformat(), "timezone": session.timezone,
        "guests": booking["guest_count"], "total_amount": booking["total_amount"], "currency": booking["currency"],
        "first_name": booking["customer_first_name"]})


async def _retake_capacity(db: AsyncConnection, org_id: uuid.UUID, session_id: uuid.UUID, guests: int) -> bool:
    """The released booking's spots again, if the session still has them (the same conditional
    UPDATE as a hold: a started, closed or unbookable session counts as no capacity)."""
    from bookingtms.errors import AppError

    try:
        session = await sessions_service.bookable_session(db, org_id, session_id)
        await sessions_service.take_capacity(db, org_id, session, guests)
    except AppError:
        return False
    return True


async def settle_paid(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID, *, amount: int,
                      checkout_session_id: str | None, payment_intent_id: str | None) -> str:
    """A completed payment. A pending booking is confirmed. A booking released meanwhile takes its
    capacity again if the session has it and is confirmed; otherwise (or if it was cancelled on
    purpose) it is flagged in `attention` and refunded in full, fee included — never oversold.
    Returns what happened: confirmed | reinstated | refunded | duplicate | unknown."""
    row = await _lock_booking(db, org_id, booking_id)
    charge = await payments_service.charge_by_stripe(db, org_id, checkout_session_id=checkout_session_id,
                                                     payment_intent_id=payment_intent_id, booking_id=booking_id)
    if row is None or charge is None or charge.booking_id != booking_id:
        return "unknown"
    if not await payments_service.mark_charge_succeeded(db, org_id, charge, amount=amount,
                                                        payment_intent_id=payment_intent_id):
        return "duplicate"
    where = (bookings.c.organization_id == org_id, bookings.c.id == booking_id)
    outcome = "confirmed"
    if row.status == "cancelled":
        if row.cancel_reason == PAYMENT_EXPIRED and row.cancelled_by == "system" \
                and await _retake_capacity(db, org_id, row.session_id, row.guest_count):
            await db.execute(update(bookings).where(*where).values(
                status="confirmed", cancelled_at=None, cancel_reason=None, cancelled_by=None))
            await db.execute(update(customers).where(
                customers.c.organization_id == org_id, customers.c.id == row.customer_id).values(
                total_bookings=customers.c.total_bookings + 1, total_spent=customers.c.total_spent + row.total_amount))
            outcome = "reinstated"
        else:
            attention = ("paid_after_expiry_refunded" if row.cancel_reason == PAYMENT_EXPIRED
                         else "paid_after_cancellation_refunded")
            await db.execute(update(bookings).where(*where).values(attention=attention))
            charge = await payments_service.charge_for_booking(db, org_id, booking_id)
            org = await providers.organization(db, org_id)
            await providers.provider_named(charge.provider).refund(
                db, org, charge, charge.amount - charge.refunded_amount, f"bookingtms-refund-{charge.id}-auto")
            outcome = "refunded"
    elif row.status == "pending_payment":
        await db.execute(update(bookings).where(*where).values(status="confirmed"))
        await announce(db, org_id, booking_id, "confirmed")
    await sync_payment_state(db, org_id, booking_id)
    if outcome != "refunded":
        await _enqueue_confirmation(db, org_id, booking_id)
    return outcome


async def check_in(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID) -> dict[str, Any]:
    booking = await get_booking(db, org_id, booking_id)
    if booking["status"] != "confirmed":
        raise Conflict(f"A {booking['status']} booking cannot be checked in.", code="not_checkin_able")
    done = (await db.execute(update(bookings).where(
        bookings.c.organization_id == org_id, bookings.c.id == booking_id, bookings.c.checked_in_at.is_(None)
    ).values(checked_in_at=func.now()).returning(bookings.c.id))).first()
    if done is None:
        raise Conflict("This booking is already checked in.", code="already_checked_in")
    await announce(db, org_id, booking_id, "checked_in", venue_id=booking["venue_id"])
    return await get_booking(db, org_id, booking_id)


async def announce(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID, change: str,
                   venue_id: uuid.UUID | None = None) -> None:
    """Tells the staff dashboards (realtime hub, `booking` events) of a change that moves no
    capacity; capacity changes are announced by the sessions' own trigger. NOTIFY is sent when
    this transaction commits and dropped if it rolls back."""
    import json

    if venue_id is None:
        venue_id = (await db.execute(select(bookings.c.venue_id).where(
            bookings.c.organization_id == org_id, bookings.c.id == booking_id))).scalar_one()
    await db.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": BOOKING_CHANNEL, "payload": json.dumps({
        "organization_id": str(org_id), "venue_id": str(venue_id), "booking_id": str(booking_id), "change": change})})


async def organizations_for_reference(db: AsyncConnection, reference: str) -> list[uuid.UUID]:
    return list((await db.execute(text("SELECT organizations_by_booking_reference(:r)"),
                                  {"r": reference.strip().upper()})).scalars())
