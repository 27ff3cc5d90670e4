from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response

from bookingtms.config import get_settings
from bookingtms.db.engine import tenant_transaction
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.public import PublicVenue, public_venue
from bookingtms.reservations import service
from bookingtms.reservations.schemas import Checkout, HoldCreate

public_router = APIRouter(prefix="/v1/public/venues/{embed_key}/reservations", tags=["public"])


@public_router.post("", status_code=201)
async def create_hold(body: HoldCreate, key: str | None = IdempotencyKey, v: PublicVenue = Depends(public_venue)):
    ttl = get_settings().reservation_ttl_seconds
    async with tenant_transaction(v.db_context()) as db:
        return await idempotent(db, key, organization_id=v.organization_id, scope=v.scope,
                                payload=["hold", body.model_dump(mode="json")],
                                create=lambda: service.hold(db, v.organization_id, v.venue_id, body, ttl))


@public_router.post("/{reservation_id}/checkout", status_code=201)
async def checkout(reservation_id: uuid.UUID, body: Checkout, key: str | None = IdempotencyKey,
                   v: PublicVenue = Depends(public_venue)):
    async with tenant_transaction(v.db_context()) as db:
        return await idempotent(db, key, organization_id=v.organization_id, scope=v.scope,
                                payload=["checkout", str(reservation_id), body.model_dump(mode="json")],
                                create=lambda: service.checkout(db, v.organization_id, v.venue_id, reservation_id, body))


@public_router.delete("/{reservation_id}", status_code=204)
async def release(reservation_id: uuid.UUID, v: PublicVenue = Depends(public_venue)):
    async with tenant_transaction(v.db_context()) as db:
        await service.release(db, v.organization_id, v.venue_id, reservation_id)
    return Response(status_code=204)
