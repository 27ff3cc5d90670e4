from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response

from bookingtms.audit.service import changed, diff, record
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.principal import Principal, require
from bookingtms.http.public import PublicVenue, public_venue
from bookingtms.venues import service
from bookingtms.venues.schemas import VenueCreate, VenueUpdate

router = APIRouter(prefix="/v1/venues", tags=["venues"])
CREATED_FIELDS = ("name", "slug", "timezone", "address", "city", "state", "zip", "country", "status", "settings",
                  "operating_hours")
public_router = APIRouter(prefix="/v1/public/venues", tags=["public"])


@router.get("")
async def list_venues(paging: PageParams = Depends(page_params), p: Principal = Depends(require("venues.view"))):
    async with read_transaction(p.db_context()) as db:
        return await service.list_venues(db, p.organization_id, paging.limit, paging.after)


@router.post("", status_code=201)
async def create_venue(body: VenueCreate, key: str | None = IdempotencyKey,
                       p: Principal = Depends(require("venues.manage"))):
    async def create():
        venue = await service.create_venue(db, p.organization_id, body)
        await record(db, "venue.created", organization_id=p.organization_id, target_type="venue", target_id=venue["id"],
                     changes=changed({}, venue, CREATED_FIELDS))
        return venue

    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=p.organization_id, scope=p.scope,
                                payload=["POST /v1/venues", body.model_dump(mode="json")], create=create)


@router.get("/{venue_id}")
async def get_venue(venue_id: uuid.UUID, p: Principal = Depends(require("venues.view"))):
    async with read_transaction(p.db_context()) as db:
        return await service.get_venue(db, p.organization_id, venue_id)


@router.patch("/{venue_id}")
async def update_venue(venue_id: uuid.UUID, body: VenueUpdate, p: Principal = Depends(require("venues.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.edit_venue(db, p.organization_id, venue_id, body)


@router.delete("/{venue_id}", status_code=204)
async def delete_venue(venue_id: uuid.UUID, p: Principal = Depends(require("venues.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        before = await service.get_venue(db, p.organization_id, venue_id)
        await service.archive_venue(db, p.organization_id, venue_id)
        await record(db, "venue.archived", organization_id=p.organization_id, target_type="venue", target_id=venue_id,
                     changes=diff({"status": before["status"]}, {"status": "archived"}))
    return Response(status_code=204)


@public_router.get("/{embed_key}")
async def public_venue_info(v: PublicVenue = Depends(public_venue)):
    return Response(await service.public_page_json(v), media_type="application/json")  # sent as cached
