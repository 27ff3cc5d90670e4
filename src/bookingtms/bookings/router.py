from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from bookingtms.audit.service import changed, diff, record, record_alone
from bookingtms.bookings import links, service
from bookingtms.bookings.schemas import CustomerCancel, StaffBookingCreate, StaffCancel
from bookingtms.db.engine import DbContext, read_transaction, tenant_transaction
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.params import day_or_instant, on_the_loop
from bookingtms.http.responses import OrjsonResponse
from bookingtms.http.principal import Principal, require

router = APIRouter(prefix="/v1/bookings", tags=["bookings"])
public_router = APIRouter(prefix="/v1/public/bookings", tags=["public"])

Reference = Path(min_length=3, max_length=32)
CREATED_FIELDS = ("booking_reference", "session_id", "customer_id", "guest_count", "total_amount", "currency", "status",
                  "notes")
CANCEL_FIELDS = ("status", "payment_status", "refund_amount", "cancel_reason", "cancelled_at")
PUBLIC_FIELDS = ("id", "reference", "booking_reference", "status", "payment_status", "guest_count", "total_amount",
                 "currency", "refund_amount", "start_time", "end_time", "activity_name", "cancellation_policy",
                 "cancelled_at")


WINDOW_FROM = ("Bookings of sessions from this local day (YYYY-MM-DD, the venue's day) or from this RFC 3339 "
               "time on")
WINDOW_TO = "Up to and including this local day (YYYY-MM-DD), or up to (not including) this RFC 3339 time"


class BookingFilters:
    """The list's filters (also the export's)."""

    def __init__(self, date_from: str | None = Query(None, alias="from", description=WINDOW_FROM),
                 date_to: str | None = Query(None, alias="to", description=WINDOW_TO),
                 status: Literal["pending_payment", "confirmed", "cancelled"] | None = None,
                 venue_id: uuid.UUID | None = None, activity_id: uuid.UUID | None = None,
                 q: str | None = Query(None, max_length=200)):
        self.values = {"date_from": day_or_instant(date_from, "from"), "date_to": day_or_instant(date_to, "to"),
                       "status": status, "venue_id": venue_id, "activity_id": activity_id, "q": q}

    def given(self) -> dict:
        """The filters that were set, as the audit trail records them."""
        names = {"date_from": "from", "date_to": "to"}
        return {names.get(k, k): v for k, v in self.values.items() if v is not None}


@router.get("")
async def list_bookings(filters: BookingFilters = Depends(on_the_loop(BookingFilters)),
                        paging: PageParams = Depends(page_params),
                        p: Principal = Depends(require("bookings.view"))):
    # From the replica (a list may lag a moment); the audit row is a write, so it goes to the
    # primary, and is committed before the list is answered.
    async with read_transaction(p.db_context()) as db:
        result = await service.list_bookings(db, p.organization_id, **filters.values, limit=paging.limit,
                                             after=paging.after)
    await record_alone("bookings.listed", organization_id=p.organization_id, target_type="booking", changes={
        "filter": filters.given(), "count": len(result["items"]),
        "booking_ids": [item["id"] for item in result["items"]]})
    return OrjsonResponse(result)


@router.get("/export.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "The bookings as CSV, times in each venue's zone"}})
async def export_bookings(filters: BookingFilters = Depends(on_the_loop(BookingFilters)),
                          p: Principal = Depends(require("bookings.view"))):
    """Streams the bookings matching the list's filters as CSV (in session order). Audited as
    `bookings.exported` with the filter and the number of rows."""
    return service.csv_response(p.db_context(), p.organization_id, filters.values, filters.given())


@router.post("", status_code=201)
async def create_booking(body: StaffBookingCreate, key: str | None = IdempotencyKey,
                         p: Principal = Depends(require("bookings.create"))):
    async def create():
        booking = await service.staff_booking(db, p.organization_id, p.user_id, body.session_id, body.guest_count,
                                              body.customer, body.notes)
        await record(db, "booking.created", organization_id=p.organization_id, target_type="booking",
                     target_id=booking["id"], changes=diff({}, {k: booking[k] for k in CREATED_FIELDS}))
        return booking

    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=p.organization_id, scope=p.scope,
                                payload=["POST /v1/bookings", body.model_dump(mode="json")], create=create)


# A single booking is read from the primary: clients read it right after their own write (create,
# cancel, check-in), and its audit row needs a primary transaction anyway.
@router.get("/by-reference/{reference}")
async def get_by_reference(reference: str = Reference, p: Principal = Depends(require("bookings.view"))):
    async with tenant_transaction(p.db_context()) as db:
        booking = await service.get_by_reference(db, p.organization_id, reference)
        await record(db, "booking.viewed", organization_id=p.organization_id, target_type="booking",
                     target_id=booking["id"], changes={"reference": booking["booking_reference"]})
        return booking


@router.get("/{booking_id}")
async def get_booking(booking_id: uuid.UUID, p: Principal = Depends(require("bookings.view"))):
    async with tenant_transaction(p.db_context()) as db:
        booking = await service.get_booking(db, p.organization_id, booking_id)
        await record(db, "booking.viewed", organization_id=p.organization_id, target_type="booking",
                     target_id=booking_id)
    return OrjsonResponse(booking)


@router.post("/{booking_id}/cancel")
async def cancel_booking(booking_id: uuid.UUID, body: StaffCancel | None = None,
                         p: Principal = Depends(require("bookings.cancel"))):
    body = body or StaffCancel()
    async with tenant_transaction(p.db_context()) as db:
        before = await service.get_booking(db, p.organization_id, booking_id)
        after = await service.cancel_booking(db, p.organization_id, booking_id, cancelled_by=p.actor,
                                             refund=body.refund, reason=body.reason)
        await record(db, "booking.cancelled", organization_id=p.organization_id, target_type="booking",
                     target_id=booking_id, changes={**changed(before, after, CANCEL_FIELDS), "refund_mode": body.refund})
        return after


@router.post("/{booking_id}/check-in")
async def check_in(booking_id: uuid.UUID, p: Principal = Depends(require("bookings.checkin"))):
    async with tenant_transaction(p.db_context()) as db:
        booking = await service.check_in(db, p.organization_id, booking_id)
        await record(db, "booking.checked_in", organization_id=p.organization_id, target_type="booking",
                     target_id=booking_id, changes=diff({"checked_in_at": None}, {"checked_in_at": booking["checked_in_at"]}))
        return booking


# On the primary: customers look their booking up right after checkout or cancelling it.
@public_router.get("/{reference}")
async def public_booking(reference: str = Reference, email: str = Query(min_length=3, max_length=320)):
    _, booking = await links.find_customer_booking(reference, email)
    return OrjsonResponse({k: booking[k] for k in PUBLIC_FIELDS})


@public_router.post("/{reference}/cancel")
async def public_cancel(body: CustomerCancel, reference: str = Reference):
    org_id, booking = await links.find_customer_booking(reference, body.email)
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        cancelled = await service.cancel_booking(db, org_id, booking["id"], cancelled_by="customer",
                                                 forbid_after_start=True)
    return {k: cancelled[k] for k in PUBLIC_FIELDS}
