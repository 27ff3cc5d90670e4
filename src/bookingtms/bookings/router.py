from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query

from bookingtms.bookings import service
from bookingtms.bookings.schemas import CustomerCancel, StaffBookingCreate, StaffCancel
from bookingtms.db.engine import DbContext, get_engine, tenant_transaction
from bookingtms.errors import NotFound
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.pagination import PageParams
from bookingtms.http.principal import Principal, require

router = APIRouter(prefix="/v1/bookings", tags=["bookings"])
public_router = APIRouter(prefix="/v1/public/bookings", tags=["public"])

Reference = Path(min_length=3, max_length=32)
PUBLIC_FIELDS = ("id", "booking_reference", "status", "payment_status", "guest_count", "total_amount", "currency",
                 "refund_amount", "start_time", "end_time", "activity_name", "cancellation_policy", "cancelled_at")


@router.get("")
async def list_bookings(date_from: date | None = Query(None, alias="from"), date_to: date | None = Query(None, alias="to"),
                        status: Literal["pending_payment", "confirmed", "cancelled"] | None = None,
                        venue_id: uuid.UUID | None = None, activity_id: uuid.UUID | None = None,
                        q: str | None = Query(None, max_length=200), paging: PageParams = Depends(),
                        p: Principal = Depends(require("bookings.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.list_bookings(db, p.organization_id, date_from=date_from, date_to=date_to, status=status,
                                           venue_id=venue_id, activity_id=activity_id, q=q, limit=paging.limit,
                                           after=paging.after)


@router.post("", status_code=201)
async def create_booking(body: StaffBookingCreate, key: str | None = IdempotencyKey,
                         p: Principal = Depends(require("bookings.create"))):
    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=p.organization_id, scope=p.scope,
                                payload=["POST /v1/bookings", body.model_dump(mode="json")],
                                create=lambda: service.staff_booking(db, p.organization_id, p.user_id, body.session_id,
                                                                     body.guest_count, body.customer, body.notes))


@router.get("/by-reference/{reference}")
async def get_by_reference(reference: str = Reference, p: Principal = Depends(require("bookings.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.get_by_reference(db, p.organization_id, reference)


@router.get("/{booking_id}")
async def get_booking(booking_id: uuid.UUID, p: Principal = Depends(require("bookings.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.get_booking(db, p.organization_id, booking_id)


@router.post("/{booking_id}/cancel")
async def cancel_booking(booking_id: uuid.UUID, body: StaffCancel | None = None,
                         p: Principal = Depends(require("bookings.cancel"))):
    body = body or StaffCancel()
    async with tenant_transaction(p.db_context()) as db:
        return await service.cancel_booking(db, p.organization_id, booking_id, cancelled_by=f"user:{p.user_id}",
                                            refund=body.refund, reason=body.reason)


@router.post("/{booking_id}/check-in")
async def check_in(booking_id: uuid.UUID, p: Principal = Depends(require("bookings.checkin"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.check_in(db, p.organization_id, booking_id)


async def _customer_booking_org(reference: str, email: str) -> tuple[uuid.UUID, dict]:
    """The organization whose booking has this reference and this customer email. A wrong email
    looks exactly like an unknown reference."""
    async with get_engine().connect() as conn:
        org_ids = await service.organizations_for_reference(conn, reference)
    for org_id in org_ids:
        async with tenant_transaction(DbContext(organization_id=org_id)) as db:
            try:
                return org_id, await service.get_by_reference(db, org_id, reference, email)
            except NotFound:
                continue
    raise NotFound("No booking has this reference and email.", code="booking_not_found")


@public_router.get("/{reference}")
async def public_booking(reference: str = Reference, email: str = Query(min_length=3, max_length=320)):
    _, booking = await _customer_booking_org(reference, email)
    return {k: booking[k] for k in PUBLIC_FIELDS}


@public_router.post("/{reference}/cancel")
async def public_cancel(body: CustomerCancel, reference: str = Reference):
    org_id, booking = await _customer_booking_org(reference, body.email)
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        cancelled = await service.cancel_booking(db, org_id, booking["id"], cancelled_by="customer",
                                                 forbid_after_start=True)
    return {k: cancelled[k] for k in PUBLIC_FIELDS}
