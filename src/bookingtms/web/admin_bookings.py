"""The staff dashboard's day, bookings, customers and live lists.

* `GET /admin`: Today, the day's sessions of one venue with their bookings and a Check-in button each;
* `GET /admin/bookings`: lookup (an exact reference jumps to the booking; an exact email goes through
  the customers' unique index) and the list with filters, cursor pages and the CSV export;
* `GET /admin/bookings/{id}`: the booking with Check in, and Cancel with a refund choice whose amounts
  are computed by the service's own refund code before anyone confirms;
* `GET|POST /admin/bookings/new`: a staff booking (paid at the venue);
* `GET /admin/customers[/{id}]`: customers with their totals, history and an edit form;
* `GET /admin/events`: the organization's changes as Server-Sent Events (realtime hub), which
  static/js/admin-live.js turns into in-place refreshes of the page's `[data-live]` region.

Each route mirrors its API route (bookings/router.py, customers/router.py): the same permission, the
same service call, the same kind of transaction and the same audit rows."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson
import pydantic
from fastapi import APIRouter, Depends, Request

from bookingtms.activities import service as activities_service
from bookingtms.audit.service import changed, diff, lock_target, record, record_alone
from bookingtms.bookings import service
from bookingtms.bookings.schemas import StaffBookingCreate, StaffCancel
from bookingtms.customers import service as customers_service
from bookingtms.customers.schemas import CustomerUpdate
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.errors import AppError, Conflict, NotFound, ValidationFailed
from bookingtms.http.idempotency import idempotent
from bookingtms.http.pagination import decode_cursor
from bookingtms.http.principal import Principal
from bookingtms.notifications.render import money
from bookingtms.payments import service as payments_service
from bookingtms.realtime import router as realtime
from bookingtms.sessions import service as sessions_service
from bookingtms.venues import service as venues_service
from bookingtms.web import session
from bookingtms.web.forms import form_data
from bookingtms.web.templating import redirect, render

router = APIRouter()

PAGE_SIZE = 50
STATUSES = ("confirmed", "pending_payment", "cancelled")
REFUND_MODES = ("policy", "full", "none")
REFERENCE = re.compile(r"^[A-HJ-NP-Z2-9]{5}-?[A-HJ-NP-Z2-9]{5}$")  # bookings.service.REFERENCE_ALPHABET
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CREATED_FIELDS = ("booking_reference", "session_id", "customer_id", "guest_count", "total_amount", "currency", "status",
                  "notes")  # what the API's booking.created audit row records
CANCEL_FIELDS = ("status", "payment_status", "refund_amount", "cancel_reason", "cancelled_at")
MAX_BACK = 40  # earlier pages remembered for "Previous" (the URL carries them)


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------
def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _booking_id(value: str) -> uuid.UUID:
    found = _uuid(value)
    if found is None:
        raise NotFound("No such booking.", code="booking_not_found")
    return found


def _back_to(value: str | None, default: str) -> str:
    """Where a form returns to: only a path of the dashboard (never another site)."""
    if value and value.startswith("/admin") and "//" not in value and "\\" not in value:
        return value
    return default


def _day(value: str | None, field: str, errors: dict[str, str]) -> date | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        errors[field] = "Enter a date as YYYY-MM-DD."
        return None
    if not 2000 <= day.year <= 2100:  # and no overflow a day either side of it, in any time zone
        errors[field] = "Enter a date between the years 2000 and 2100."
        return None
    return day


def _zone(tz: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _cursor(value: str | None, errors: dict[str, str]) -> list | None:
    if not value:
        return None
    try:
        return decode_cursor(value)
    except ValidationFailed:
        errors["cursor"] = "This page link is out of date; start from the first page."
        return None


def _pages(request: Request, next_cursor: str | None) -> dict[str, str | None]:
    """Next / previous links for keyset pages: `back` carries the cursors of the earlier pages."""
    params = {k: v for k, v in request.query_params.items() if v}
    current = params.pop("cursor", "")
    back = [c for c in params.pop("back", "").split(",") if c][-MAX_BACK:]
    path = request.url.path

    def url(cursor: str, stack: list[str]) -> str:
        query = {**params, **({"cursor": cursor} if cursor and cursor != "0" else {}),
                 **({"back": ",".join(stack)} if stack else {})}
        return path + ("?" + urlencode(query) if query else "")

    return {"next": url(next_cursor, back + [current or "0"]) if next_cursor else None,
            "previous": url(back[-1], back[:-1]) if back else (url("", []) if current else None),
            "first": url("", []) if current else None}


async def _venues(db, org_id: uuid.UUID) -> list[dict[str, Any]]:
    return (await venues_service.list_venues(db, org_id, 200, None))["items"]


async def _activities(db, org_id: uuid.UUID, venue_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    return (await activities_service.list_activities(db, org_id, venue_id, 200, None))["items"]


async def _venue_zone(db, org_id: uuid.UUID, venue_id: uuid.UUID) -> str:
    try:
        return (await venues_service.get_venue(db, org_id, venue_id))["timezone"]
    except NotFound:  # an archived venue: its bookings are still shown
        return "UTC"


async def _currency(db, org_id: uuid.UUID) -> str:
    """The currency customers' totals are in: the organization's activities' (one per organization in practice)."""
    activities = (await activities_service.list_activities(db, org_id, None, 1, None))["items"]
    return activities[0]["currency"] if activities else "USD"


def _day_window(day: date, tz: str) -> tuple[datetime, datetime]:
    zone = _zone(tz)
    return (datetime.combine(day, time(0), zone).astimezone(timezone.utc),
            datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(timezone.utc))


async def _sessions_of_day(db, org_id: uuid.UUID, venue_id: uuid.UUID, day: date, tz: str, *,
                           available: bool | None = None) -> list[dict[str, Any]]:
    start, end = _day_window(day, tz)
    found: list[dict[str, Any]] = []
    after = None
    while len(found) < 1000:  # idx_sessions_venue_time; a day rarely has more than a few dozen
        result = await sessions_service.list_sessions(db, org_id, activity_id=None, venue_id=venue_id, start=start,
                                                      end=end, available=available, limit=200, after=after)
        found += result["items"]
        if not result["next_cursor"]:
            break
        after = decode_cursor(result["next_cursor"])
    return found


# ------------------------------------------------------------------------------------------------
# Today
# ------------------------------------------------------------------------------------------------
@router.get("/admin")
async def today(request: Request, p: Principal = Depends(session.require_page("bookings.view"))):
    errors: dict[str, str] = {}
    org = p.organization_id
    async with tenant_transaction(p.db_context()) as db:
        venues = await _venues(db, org)
        if not venues:
            return render(request, "admin/today.html", venues=[], venue=None, day=None, sessions=[], errors=errors,
                          links={}, totals={})
        wanted = _uuid(request.query_params.get("venue"))
        venue = next((v for v in venues if v["id"] == wanted), venues[0])
        tz = venue["timezone"]
        local_today = datetime.now(_zone(tz)).date()
        day = _day(request.query_params.get("date"), "date", errors) or local_today
        sessions = await _sessions_of_day(db, org, venue["id"], day, tz)
        names = {a["id"]: a["name"] for a in await _activities(db, org, venue["id"])}
        bookings = await service.list_for_sessions(db, org, [s["id"] for s in sessions])
        if bookings:  # who saw which customers, as GET /v1/bookings records it
            await record(db, "bookings.listed", organization_id=org, target_type="booking", changes={
                "filter": {"view": "today", "venue_id": venue["id"], "date": day}, "count": len(bookings),
                "booking_ids": [b["id"] for b in bookings]})
    by_session: dict[uuid.UUID, list] = {}
    for booking in bookings:
        by_session.setdefault(booking["session_id"], []).append(booking)
    shown = []
    for s in sessions:
        rows = by_session.get(s["id"], [])
        live = [b for b in rows if b["status"] != "cancelled"]
        shown.append({**s, "activity_name": names.get(s["activity_id"]) or (rows[0]["activity_name"] if rows else "Activity"),
                      "bookings": rows, "guests": sum(b["guest_count"] for b in live),
                      "checked_in": sum(b["guest_count"] for b in live if b["checked_in_at"])})
    query = {"venue": str(venue["id"])} if len(venues) > 1 else {}

    def at(d: date) -> str:
        return "/admin?" + urlencode({**query, "date": d.isoformat()})

    links = {"previous": at(day - timedelta(days=1)), "next": at(day + timedelta(days=1)),
             "today": at(local_today) if day != local_today else None, "here": at(day)}
    totals = {"sessions": len(shown), "bookings": sum(len([b for b in s["bookings"] if b["status"] != "cancelled"])
                                                      for s in shown),
              "guests": sum(s["guests"] for s in shown), "checked_in": sum(s["checked_in"] for s in shown)}
    return render(request, "admin/today.html", status=422 if errors else 200, venues=venues, venue=venue, day=day,
                  is_today=day == local_today, sessions=shown, errors=errors, links=links, totals=totals)


@router.post("/admin/bookings/{booking_id}/check-in")
async def check_in(request: Request, booking_id: str, p: Principal = Depends(session.require_page("bookings.checkin"))):
    form = await form_data(request)
    bid = _booking_id(booking_id)
    back = _back_to(form.text("next"), f"/admin/bookings/{bid}")
    try:
        async with tenant_transaction(p.db_context()) as db:
            booking = await service.check_in(db, p.organization_id, bid)
            await record(db, "booking.checked_in", organization_id=p.organization_id, target_type="booking",
                         target_id=bid, changes=diff({"checked_in_at": None}, {"checked_in_at": booking["checked_in_at"]}))
            tz = await _venue_zone(db, p.organization_id, booking["venue_id"])
    except Conflict as exc:  # already checked in, or cancelled meanwhile: say so where they were
        return redirect(request, back, flash=exc.detail)
    at = booking["checked_in_at"].astimezone(_zone(tz)).strftime("%H:%M")
    name = f"{booking['customer_first_name']} {booking['customer_last_name']}".strip()
    return redirect(request, back, flash=f"{booking['booking_reference']} ({name}) checked in at {at}.")


# ------------------------------------------------------------------------------------------------
# Bookings: lookup, list, export
# ------------------------------------------------------------------------------------------------
def _filters(request: Request, errors: dict[str, str]) -> dict[str, Any]:
    """The list's filters from the query string, as bookings.service.list_bookings takes them."""
    q = request.query_params
    status = q.get("status") or None
    if status and status not in STATUSES:
        errors["status"] = "Choose a status from the list."
        status = None
    text = (q.get("q") or "").strip()
    if len(text) > 200:
        errors["q"] = "At most 200 characters."
        text = text[:200]
    values = {"date_from": _day(q.get("from"), "from", errors), "date_to": _day(q.get("to"), "to", errors),
              "status": status, "venue_id": _uuid(q.get("venue")), "activity_id": _uuid(q.get("activity")),
              "q": text or None}
    for name, key in (("venue", "venue_id"), ("activity", "activity_id")):
        if q.get(name) and values[key] is None:
            errors[name] = "Choose one from the list."
    if values["date_from"] and values["date_to"] and values["date_from"] > values["date_to"]:
        errors["to"] = "The end date is before the start date."
    return values


def _given(values: dict[str, Any]) -> dict[str, Any]:
    names = {"date_from": "from", "date_to": "to"}
    return {names.get(k, k): v for k, v in values.items() if v is not None}


SEARCH_CUSTOMERS = 50  # a name or email part matching more customers than this is searched the plain way


async def _resolve(db, org_id: uuid.UUID, values: dict[str, Any]) -> tuple[dict[str, Any] | None, dict | None]:
    """The service's filters for what was typed, looking a name or email up through the customers
    first: an exact email by the customers' unique index; a part of one, or of a name, among the
    organization's customers (far fewer rows than its bookings), whose bookings are then read by
    customer (idx_bookings_customer). Only a part matching very many customers (so it matches
    bookings at once) is left to list_bookings' own search. None: nothing can match. Also the
    customer, when an exact email found one."""
    text = values["q"]
    if not text:
        return values, None
    plain = {**values, "q": None}
    if EMAIL.match(text):
        customer = await customers_service.find_by_email(db, org_id, text)
        if customer is not None:
            return {**plain, "customer_id": customer["id"]}, customer
    found = await customers_service.list_customers(db, org_id, text, SEARCH_CUSTOMERS, None)
    if found["next_cursor"] is not None:
        return values, None
    if not found["items"]:
        return None, None
    return {**plain, "customer_id": [c["id"] for c in found["items"]]}, None


@router.get("/admin/bookings")
async def bookings_list(request: Request, p: Principal = Depends(session.require_page("bookings.view"))):
    errors: dict[str, str] = {}
    org = p.organization_id
    values = _filters(request, errors)
    after = _cursor(request.query_params.get("cursor"), errors)
    text = values["q"]
    others = any(values[k] for k in ("date_from", "date_to", "status", "venue_id", "activity_id"))
    customer = None
    if text and not errors and after is None and REFERENCE.match(text.upper()):
        # The reference's own index (idx_bookings_reference): straight to the booking.
        reference = text.upper() if "-" in text else f"{text[:5].upper()}-{text[5:].upper()}"
        async with tenant_transaction(p.db_context()) as db:
            try:
                found = await service.get_by_reference(db, org, reference)
            except NotFound:
                found = None
        if found is not None:
            return redirect(request, f"/admin/bookings/{found['id']}")
    async with read_transaction(p.db_context()) as db:
        venues = await _venues(db, org)
        activities = await _activities(db, org)
        result: dict[str, Any] = {"items": [], "next_cursor": None}
        if not errors:
            wanted, customer = await _resolve(db, org, values)
            if wanted is not None:
                result = await service.list_bookings(db, org, **wanted, limit=PAGE_SIZE, after=after)
    if not errors:
        await record_alone("bookings.listed", organization_id=org, target_type="booking", changes={
            "filter": _given(values), "count": len(result["items"]),
            "booking_ids": [item["id"] for item in result["items"]]})
    zones = {v["id"]: v["timezone"] for v in venues}
    export = "/admin/bookings/export.csv" + (
        "?" + urlencode({k: v for k, v in request.query_params.items() if k not in ("cursor", "back") and v})
        if any(k not in ("cursor", "back") and v for k, v in request.query_params.items()) else "")
    return render(request, "admin/bookings.html", status=422 if errors else 200, bookings=result["items"],
                  zones=zones, venues=venues, activities=activities, values=request.query_params, errors=errors,
                  pages=_pages(request, result["next_cursor"]), export_url=export, statuses=STATUSES,
                  searched=bool(text or others), customer=customer)


@router.get("/admin/bookings/export.csv")
async def bookings_export(request: Request, p: Principal = Depends(session.require_page("bookings.view"))):
    errors: dict[str, str] = {}
    values = _filters(request, errors)
    if errors:
        field, message = next(iter(errors.items()))
        raise ValidationFailed(message, field=field, errors=[{"field": k, "message": v} for k, v in errors.items()])
    async with read_transaction(p.db_context()) as db:  # the list's rows: the same lookup
        wanted, _ = await _resolve(db, p.organization_id, values)
    if wanted is None:  # nothing matches: the header row alone
        wanted = {**values, "q": None, "customer_id": []}
    return service.csv_response(p.db_context(), p.organization_id, wanted, _given(values))


# ------------------------------------------------------------------------------------------------
# A staff booking
# ------------------------------------------------------------------------------------------------
FORM_FIELDS = ("session_id", "guest_count", "email", "first_name", "last_name", "phone", "notes")


async def _new_booking_page(request: Request, p: Principal, values: dict[str, str], errors: dict[str, str],
                            status: int = 200, problem: str | None = None):
    org = p.organization_id
    async with read_transaction(p.db_context()) as db:
        venues = await _venues(db, org)
        venue = next((v for v in venues if v["id"] == _uuid(values.get("venue"))), venues[0] if venues else None)
        sessions, day = [], None
        if venue is not None:
            day = _day(values.get("date"), "date", errors) or datetime.now(_zone(venue["timezone"])).date()
            names = {a["id"]: a for a in await _activities(db, org, venue["id"])}
            for s in await _sessions_of_day(db, org, venue["id"], day, venue["timezone"], available=True):
                activity = names.get(s["activity_id"])
                if activity is not None and activity["is_active"]:
                    sessions.append({**s, "activity_name": activity["name"], "min_players": activity["min_players"],
                                     "max_players": activity["max_players"]})
    return render(request, "admin/booking_new.html", status=status, venues=venues, venue=venue, day=day,
                  sessions=sessions, values=values, errors=errors, problem=problem,
                  idempotency_key=values.get("idempotency_key") or str(uuid.uuid4()))


@router.get("/admin/bookings/new")
async def booking_new(request: Request, p: Principal = Depends(session.require_page("bookings.create"))):
    values = {k: v for k, v in request.query_params.items() if k in ("venue", "date", "session_id")}
    return await _new_booking_page(request, p, values, {})


def _schema_errors(exc: pydantic.ValidationError) -> dict[str, str]:
    fields = {"customer": "email", "guest_count": "guest_count", "session_id": "session_id", "notes": "notes"}
    found: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        name = loc[1] if loc[0] == "customer" and len(loc) > 1 else fields.get(loc[0], loc[0])
        message = {"session_id": "Choose a session from the list.", "email": "Enter a valid email address.",
                   "phone": "Enter a phone number (digits, spaces, + - ( ) .)."}.get(name, err["msg"])
        if name == "guest_count":
            message = "Enter a number of guests of at least 1."
        if name in ("first_name", "last_name") and err["type"] == "string_too_short":
            message = "Required."
        found.setdefault(name, message)
    return found


@router.post("/admin/bookings/new")
async def booking_create(request: Request, p: Principal = Depends(session.require_page("bookings.create"))):
    form = await form_data(request)
    values = {name: form.text(name, max_length=2000) for name in (*FORM_FIELDS, "venue", "date", "idempotency_key")}
    errors: dict[str, str] = {}
    guests: int | None = None
    try:
        guests = form.integer("guest_count", minimum=1, maximum=10_000)
    except ValidationFailed as exc:
        errors["guest_count"] = exc.detail
    try:
        body = StaffBookingCreate(session_id=values["session_id"] or None, guest_count=guests or 0, customer={
            "email": values["email"], "first_name": values["first_name"], "last_name": values["last_name"],
            "phone": values["phone"] or None}, notes=values["notes"] or None)
    except pydantic.ValidationError as exc:
        errors = {**_schema_errors(exc), **errors}
    if errors:
        return await _new_booking_page(request, p, values, errors, status=422)
    org = p.organization_id

    async def create():
        booking = await service.staff_booking(db, org, p.user_id, body.session_id, body.guest_count, body.customer,
                                              body.notes)
        await record(db, "booking.created", organization_id=org, target_type="booking", target_id=booking["id"],
                     changes=diff({}, {k: booking[k] for k in CREATED_FIELDS}))
        return booking

    try:
        async with tenant_transaction(p.db_context()) as db:
            # The form's own key: a double click or a resent form books once.
            response = await idempotent(db, values["idempotency_key"][:255] or None, organization_id=org,
                                        scope=p.scope, payload=["POST /admin/bookings/new", body.model_dump(mode="json")],
                                        create=create)
    except AppError as exc:
        field = {"sold_out": "guest_count", "invalid_party_size": "guest_count", "session_started": "session_id",
                 "session_closed": "session_id", "activity_unavailable": "session_id",
                 "session_not_found": "session_id"}.get(exc.code)
        if exc.code == "session_not_found":
            message = "Choose a session from the list."
        elif exc.code == "sold_out":
            left = exc.extra.get("capacity_remaining")
            message = f"Sold out: only {left} spots are left." if left else "Sold out: no spots are left."
        else:
            message = exc.detail
        if field is None:
            return await _new_booking_page(request, p, values, {}, status=exc.status, problem=message)
        return await _new_booking_page(request, p, values, {field: message}, status=exc.status)
    booking = orjson.loads(response.body)
    return redirect(request, f"/admin/bookings/{booking['id']}",
                    flash=f"Booked {booking['booking_reference']} for {booking['guest_count']} guests.")


# ------------------------------------------------------------------------------------------------
# One booking: detail, cancel
# ------------------------------------------------------------------------------------------------
@router.get("/admin/bookings/{booking_id}")
async def booking_detail(request: Request, booking_id: str,
                         p: Principal = Depends(session.require_page("bookings.view"))):
    bid = _booking_id(booking_id)
    org = p.organization_id
    # On the primary, as GET /v1/bookings/{id}: read right after a check-in or a cancellation.
    async with tenant_transaction(p.db_context()) as db:
        booking = await service.get_booking(db, org, bid)
        await record(db, "booking.viewed", organization_id=org, target_type="booking", target_id=bid)
        tz = await _venue_zone(db, org, booking["venue_id"])
        charge = await payments_service.charge_for_booking(db, org, bid, lock=False)
        preview = (await service.refund_preview(db, org, bid)
                   if booking["status"] != "cancelled" and "bookings.cancel" in p.permissions else None)
        try:
            venue_name = (await venues_service.get_venue(db, org, booking["venue_id"]))["name"]
        except NotFound:
            venue_name = ""
    applied = (booking["cancellation_policy"] or {}).get("applied")
    return render(request, "admin/booking.html", booking=booking, tz=tz, charge=charge, preview=preview,
                  applied=applied, venue_name=venue_name, modes=REFUND_MODES, policy=booking["cancellation_policy"] or {})


@router.post("/admin/bookings/{booking_id}/cancel")
async def booking_cancel(request: Request, booking_id: str, p: Principal = Depends(session.require_page("bookings.cancel"))):
    form = await form_data(request)
    bid = _booking_id(booking_id)
    try:
        body = StaffCancel(refund=form.text("refund") or "policy", reason=form.optional("reason", max_length=2000))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0])
        raise ValidationFailed("Choose a refund: policy, full or none." if field == "refund"
                               else "The reason is at most 500 characters.", field=field) from None
    org = p.organization_id
    try:
        async with tenant_transaction(p.db_context()) as db:
            before = await service.get_booking(db, org, bid)
            after = await service.cancel_booking(db, org, bid, cancelled_by=p.actor, refund=body.refund,
                                                 reason=body.reason)
            await record(db, "booking.cancelled", organization_id=org, target_type="booking", target_id=bid,
                         changes={**changed(before, after, CANCEL_FIELDS), "refund_mode": body.refund})
    except Conflict as exc:  # cancelled by someone else meanwhile
        return redirect(request, f"/admin/bookings/{bid}", flash=exc.detail)
    refunded = money(after["refund_amount"] or 0, after["currency"])
    return redirect(request, f"/admin/bookings/{bid}",
                    flash=f"{after['booking_reference']} cancelled; {refunded} refunded.")


# ------------------------------------------------------------------------------------------------
# Customers
# ------------------------------------------------------------------------------------------------
@router.get("/admin/customers")
async def customers_list(request: Request, p: Principal = Depends(session.require_page("customers.view"))):
    errors: dict[str, str] = {}
    q = (request.query_params.get("q") or "").strip()
    if len(q) > 200:
        errors["q"] = "At most 200 characters."
        q = q[:200]
    after = _cursor(request.query_params.get("cursor"), errors)
    result: dict[str, Any] = {"items": [], "next_cursor": None}
    currency = "USD"
    if not errors:
        async with read_transaction(p.db_context()) as db:
            result = await customers_service.list_customers(db, p.organization_id, q or None, PAGE_SIZE, after)
            currency = await _currency(db, p.organization_id)
        await record_alone("customers.listed", organization_id=p.organization_id, target_type="customer", changes={
            "filter": {"q": q} if q else {}, "count": len(result["items"]),
            "customer_ids": [item["id"] for item in result["items"]]})
    return render(request, "admin/customers.html", status=422 if errors else 200, customers=result["items"], q=q,
                  errors=errors, currency=currency, pages=_pages(request, result["next_cursor"]))


async def _customer_page(request: Request, p: Principal, customer_id: uuid.UUID, *, values: dict | None = None,
                         errors: dict[str, str] | None = None, status: int = 200):
    errors = dict(errors or {})
    org = p.organization_id
    after = _cursor(request.query_params.get("cursor"), errors)
    async with tenant_transaction(p.db_context()) as db:
        customer = await customers_service.get_customer(db, org, customer_id)
        await record(db, "customer.viewed", organization_id=org, target_type="customer", target_id=customer_id)
        history = await service.list_bookings(db, org, date_from=None, date_to=None, status=None, venue_id=None,
                                              activity_id=None, q=None, customer_id=customer_id, limit=PAGE_SIZE,
                                              after=after)
        zones = {v["id"]: v["timezone"] for v in await _venues(db, org)}
        currency = history["items"][0]["currency"] if history["items"] else await _currency(db, org)
    return render(request, "admin/customer.html", status=status, customer=customer, bookings=history["items"],
                  currency=currency,                  zones=zones, pages=_pages(request, history["next_cursor"]), errors=errors,
                  values=values or {"first_name": customer["first_name"], "last_name": customer["last_name"],
                                    "phone": customer["phone"] or ""})


@router.get("/admin/customers/{customer_id}")
async def customer_detail(request: Request, customer_id: str,
                          p: Principal = Depends(session.require_page("customers.view"))):
    cid = _uuid(customer_id)
    if cid is None:
        raise NotFound("No such customer.", code="customer_not_found")
    return await _customer_page(request, p, cid)


@router.post("/admin/customers/{customer_id}")
async def customer_update(request: Request, customer_id: str,
                          p: Principal = Depends(session.require_page("customers.manage"))):
    cid = _uuid(customer_id)
    if cid is None:
        raise NotFound("No such customer.", code="customer_not_found")
    form = await form_data(request)
    values = {name: form.text(name, max_length=200) for name in ("first_name", "last_name", "phone")}
    try:
        body = CustomerUpdate(first_name=values["first_name"], last_name=values["last_name"],
                              phone=values["phone"] or None)
    except pydantic.ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            name = str(err["loc"][0])
            errors.setdefault(name, "Required." if err["type"] == "string_too_short" else
                              "Enter a phone number (digits, spaces, + - ( ) .)." if name == "phone" else err["msg"])
        return await _customer_page(request, p, cid, values=values, errors=errors, status=422)
    org = p.organization_id
    async with tenant_transaction(p.db_context()) as db:
        await lock_target(db, "customers", org, cid)
        before = await customers_service.get_customer(db, org, cid)
        after = await customers_service.update_customer(db, org, cid, body)
        if (changes := changed(before, after, body.model_fields_set)):
            await record(db, "customer.updated", organization_id=org, target_type="customer", target_id=cid,
                         changes=changes)
    return redirect(request, f"/admin/customers/{cid}", flash="Customer saved." if changes else "Nothing changed.")


# ------------------------------------------------------------------------------------------------
# Live updates
# ------------------------------------------------------------------------------------------------
@router.get("/admin/events")
async def events(request: Request, p: Principal = Depends(session.require_page("bookings.view"))):
    """The organization's booking and availability changes as Server-Sent Events (see realtime/hub.py):
    `availability` {session_id, venue_id, capacity_remaining, ...}, `booking` {booking_id, venue_id,
    change}, `resync`. The page's script re-fetches its live region on each."""
    return realtime.staff_stream(p.organization_id, request.headers.get("last-event-id"))
