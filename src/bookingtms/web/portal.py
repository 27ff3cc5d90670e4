"""The customer portal: a customer's own booking, without an account.

* `/my-booking/{token}`: the signed link from the confirmation email (bookings/links.py) and from
  the widget's confirmation. Shows the booking, offers the .ics file, and cancels it: the refund the
  activity's policy gives right now is shown before the customer confirms (a CSRF-protected form),
  and the cancellation is the same service call as POST /v1/public/bookings/{reference}/cancel.
* `/my-booking`: for those without the link, reference + email -> a redirect to the signed link,
  or one answer, whichever of the two was wrong. Besides the public rate limit every page request
  counts against (http/ratelimit.py), failed lookups are limited per address (LOOKUP_LIMIT).

A wrong, tampered or outdated link (the booking's email changed) is a plain 404."""

from __future__ import annotations

import uuid

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

from bookingtms import cache
from bookingtms.bookings import links
from bookingtms.bookings import service as bookings_service
from bookingtms.calendars.ics import booking_calendar
from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.errors import AppError, Conflict, NotFound
from bookingtms.notifications.render import money
from bookingtms.venues import service as venues_service
from bookingtms.web.forms import form_data
from bookingtms.web.templating import redirect, render

router = APIRouter()
log = structlog.get_logger("bookingtms.portal")

LOOKUP_LIMIT = 10  # failed lookups per client address ...
LOOKUP_WINDOW_SECONDS = 600  # ... per this many seconds
NO_MATCH = "No booking matches this reference and email. Check both and try again."
ROBOTS = {"X-Robots-Tag": "noindex, nofollow"}


def _link_not_found() -> NotFound:
    return NotFound("This booking link is not valid. Open the link from your confirmation email again, or find "
                    "your booking with its reference and your email at /my-booking.", code="booking_link_invalid")


async def _load(token: str) -> tuple[uuid.UUID, dict, dict, dict]:
    """(organization id, booking, venue, refund preview) for a valid signed link, else 404. Read on
    the primary: customers arrive here right after booking, paying or cancelling."""
    parsed = links.read_token(token)
    if parsed is None:
        raise _link_not_found()
    org_id, booking_id, signature = parsed
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        try:
            booking = await bookings_service.get_booking(db, org_id, booking_id)
        except NotFound:
            raise _link_not_found() from None
        if not links.signature_matches(org_id, booking_id, booking["customer_email"], signature):
            raise _link_not_found()
        try:
            venue = await venues_service.get_venue(db, org_id, booking["venue_id"])
        except NotFound:  # an archived venue: the booking is still the customer's to see
            venue = {"name": "", "timezone": "UTC", "address": "", "city": "", "state": "", "zip": "", "country": ""}
        preview = (await bookings_service.refund_preview(db, org_id, booking_id))["policy"]
    return org_id, booking, venue, preview


def _address(venue: dict) -> str:
    return ", ".join(p for p in (venue.get(k) for k in ("address", "city", "state", "zip", "country")) if p)


def _policy_text(policy: dict) -> str:
    full = policy.get("full_refund_hours", 24)
    text = f"Full refund when cancelled at least {full} hours before the start"
    partial_hours, partial_percent = policy.get("partial_refund_hours"), policy.get("partial_refund_percent")
    if partial_hours is not None and partial_percent:
        text += f"; {partial_percent}% when cancelled at least {partial_hours} hours before"
    return text + "; no refund after that."


PAYMENT_STATES = {
    "unpaid": "To be paid at the venue", "pending": "Waiting for your payment", "paid": "Paid",
    "refunded": "Refunded", "partially_refunded": "Partly refunded",
}


def _page(request: Request, template: str, token: str, booking: dict, venue: dict, preview: dict, *,
          status: int = 200, error: str | None = None) -> Response:
    from datetime import datetime, timezone

    started = booking["start_time"] <= datetime.now(timezone.utc)
    return render(request, template, status=status, headers=ROBOTS, token=token, booking=booking, venue=venue,
                  address=_address(venue), preview=preview, started=started, error=error,
                  policy_text=_policy_text(booking["cancellation_policy"] or {}),
                  payment_state=PAYMENT_STATES.get(booking["payment_status"], booking["payment_status"]),
                  payment=request.query_params.get("payment"), base=f"{links.PORTAL_PATH}/{token}")


@router.get("/my-booking/{token}")
async def booking_page(request: Request, token: str):
    _, booking, venue, preview = await _load(token)
    return _page(request, "portal/booking.html", token, booking, venue, preview)


@router.get("/my-booking/{token}/booking.ics")
async def booking_ics(token: str):
    _, booking, venue, _ = await _load(token)
    if booking["status"] == "cancelled":
        raise Conflict("This booking is cancelled: there is nothing to add to a calendar.", code="already_cancelled")
    body = booking_calendar(reference=booking["booking_reference"], activity_name=booking["activity_name"],
                            venue_name=venue["name"], venue_address=_address(venue), timezone=venue["timezone"],
                            start_time=booking["start_time"], end_time=booking["end_time"],
                            guests=booking["guest_count"])
    filename = f"booking-{booking['booking_reference']}.ics"
    return Response(body, media_type="text/calendar; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store", **ROBOTS})


@router.get("/my-booking/{token}/cancel")
async def cancel_page(request: Request, token: str):
    _, booking, venue, preview = await _load(token)
    return _page(request, "portal/cancel.html", token, booking, venue, preview)


@router.post("/my-booking/{token}/cancel")
async def cancel(request: Request, token: str):
    org_id, booking, venue, preview = await _load(token)
    try:
        # The same call as POST /v1/public/bookings/{reference}/cancel.
        async with tenant_transaction(DbContext(organization_id=org_id)) as db:
            cancelled = await bookings_service.cancel_booking(db, org_id, booking["id"], cancelled_by="customer",
                                                              forbid_after_start=True)
    except Conflict as exc:  # already cancelled, or the session has started
        _, booking, venue, preview = await _load(token)
        return _page(request, "portal/booking.html", token, booking, venue, preview, status=409, error=exc.detail)
    refund = cancelled["refund_amount"] or 0
    message = ("Your booking is cancelled. " + (f"{money(refund, cancelled['currency'])} will be refunded."
                                                 if refund else "There is nothing to refund."))
    return redirect(request, f"{links.PORTAL_PATH}/{token}", flash=message)


# ------------------------------------------------------------------------------------------------
# Lookup by reference and email
# ------------------------------------------------------------------------------------------------
def _client(request: Request) -> str:
    return request.scope.get("state", {}).get("client_ip") or (request.client.host if request.client else "unknown")


def _lookup_key(request: Request) -> str:
    return f"bookingtms:portal-lookup:{_client(request)}"


async def _failed_lookups(request: Request) -> int:
    try:
        return int(await cache.get_redis().get(_lookup_key(request)) or 0)
    except Exception:  # noqa: BLE001 - Redis down: not limited (the same choice as the rate limiter)
        return 0


async def _count_failure(request: Request) -> None:
    try:
        redis = cache.get_redis()
        key = _lookup_key(request)
        count = await redis.incr(key)
        # The window starts at the first failure; a key left without one (an EXPIRE lost
        # after its INCR) gets one now, so no address stays locked out for good.
        if count == 1 or await redis.ttl(key) < 0:
            await redis.expire(key, LOOKUP_WINDOW_SECONDS)
    except Exception:  # noqa: BLE001
        log.warning("portal_lookup_limit_unavailable")


def _lookup_form(request: Request, *, status: int = 200, reference: str = "", email: str = "",
                 errors: dict | None = None, error: str | None = None, headers: dict | None = None) -> Response:
    return render(request, "portal/lookup.html", status=status, headers={**ROBOTS, **(headers or {})},
                  reference=reference, email=email, errors=errors or {}, error=error)


@router.get("/my-booking")
async def lookup_page(request: Request):
    return _lookup_form(request)


@router.post("/my-booking")
async def lookup(request: Request):
    form = await form_data(request)
    reference = form.text("reference", max_length=64).upper()
    email = form.text("email", max_length=320)
    errors = {}
    if not reference:
        errors["reference"] = "Enter your booking reference (for example ABCDE-FGHJK)."
    elif not 3 <= len(reference) <= 32:
        errors["reference"] = "A booking reference looks like ABCDE-FGHJK."
    if not email:
        errors["email"] = "Enter the email address you booked with."
    elif "@" not in email or len(email) < 3:
        errors["email"] = "Enter a valid email address, like name@example.com."
    if errors:
        return _lookup_form(request, status=422, reference=reference, email=email, errors=errors)
    if await _failed_lookups(request) >= LOOKUP_LIMIT:
        return _lookup_form(request, status=429, reference=reference, email=email,
                            error="Too many attempts from your network. Please wait a few minutes and try again.",
                            headers={"Retry-After": str(LOOKUP_WINDOW_SECONDS)})
    try:
        found = await links.find_customer_booking(reference, email)
    except AppError:
        found = None
    if found is None:
        await _count_failure(request)
        return _lookup_form(request, status=404, reference=reference, email=email, error=NO_MATCH)
    org_id, booking = found
    return redirect(request, links.manage_path(org_id, booking["id"], booking["customer_email"]))

