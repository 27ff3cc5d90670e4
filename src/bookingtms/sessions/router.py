from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Query, Response

from bookingtms import cache
from bookingtms.audit.service import changed, lock_target, record
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.errors import PreconditionFailed, PreconditionRequired
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.params import open_window, window
from bookingtms.http.principal import Principal, require
from bookingtms.http.public import PublicVenue, public_venue
from bookingtms.http.responses import OrjsonResponse
from bookingtms.sessions import service
from bookingtms.sessions.schemas import SessionEdit

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
public_router = APIRouter(prefix="/v1/public/venues", tags=["public"])


def _etag(version: int) -> str:
    return f'"{version}"'


def _parse_if_match(value: str | None) -> int:
    if value is None:
        raise PreconditionRequired("Send If-Match with the session's ETag to change it.")
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise PreconditionFailed("If-Match does not hold a version this API gave out.")
    return int(tag)


@router.get("")
async def list_sessions(activity_id: uuid.UUID | None = None, venue_id: uuid.UUID | None = None,
                        start: str | None = Query(None, alias="from"), end: str | None = Query(None, alias="to"),
                        available: bool | None = None, paging: PageParams = Depends(page_params),
                        p: Principal = Depends(require("sessions.view"))):
    begin, finish = open_window(start, end, max_days=366)
    async with read_transaction(p.db_context()) as db:
        return await service.list_sessions(db, p.organization_id, activity_id=activity_id, venue_id=venue_id,
                                           start=begin, end=finish, available=available,
                                           limit=paging.limit, after=paging.after)


@router.get("/{session_id}")
async def get_session(session_id: uuid.UUID, p: Principal = Depends(require("sessions.view"))):
    # The primary, not the replica: its ETag feeds the If-Match of the edit that follows.
    async with tenant_transaction(p.db_context()) as db:
        session = await service.get_session(db, p.organization_id, session_id)
    return OrjsonResponse(session, headers={"ETag": _etag(session["version"])})


@router.patch("/{session_id}")
async def edit_session(session_id: uuid.UUID, body: SessionEdit, if_match: str | None = Header(None),
                       p: Principal = Depends(require("sessions.manage"))):
    expected = _parse_if_match(if_match)
    async with tenant_transaction(p.db_context()) as db:
        await lock_target(db, "activity_sessions", p.organization_id, session_id)
        before = await service.get_session(db, p.organization_id, session_id)
        session = await service.edit_session(db, p.organization_id, session_id, expected, body.capacity_total,
                                             body.is_closed)
        if (changes := changed(before, session, ("capacity_total", "capacity_remaining", "is_closed"))):
            await record(db, "session.updated", organization_id=p.organization_id, target_type="session",
                         target_id=session_id, changes=changes)
    return OrjsonResponse(session, headers={"ETag": _etag(session["version"])})


@public_router.get("/{embed_key}/availability")
async def public_availability(activity_id: uuid.UUID | None = None, start: str | None = Query(None, alias="from"),
                              end: str | None = Query(None, alias="to"), available: bool = False,
                              v: PublicVenue = Depends(public_venue)):
    zone = ZoneInfo(v.timezone)
    begin, finish = window(start, end, zone)

    async def compute(days):
        async with read_transaction(v.db_context()) as db:
            return await service.availability_by_day(db, v.organization_id, v.venue_id, zone, days)

    days = await cache.availability_days(v.venue_id, v.timezone, service.local_days(begin, finish, zone), compute)
    sessions = service.cut_availability(days, begin, finish, activity_id, available)
    return Response(b'{"sessions":' + sessions + b"}", media_type="application/json")
