"""Venue calendar feeds: GET /v1/venues/{id}/calendar.ics?token= (no bearer: calendar clients
such as Google Calendar fetch the URL as it is) and POST /v1/venues/{id}/calendar-token (staff)."""

from __future__ import annotations

import hashlib
import uuid

from fastapi import APIRouter, Depends, Query, Request, Response

from bookingtms.audit.service import record
from bookingtms.calendars import service
from bookingtms.calendars.ics import venue_feed
from bookingtms.config import get_settings
from bookingtms.db.engine import DbContext, read_transaction, tenant_transaction
from bookingtms.errors import NotFound
from bookingtms.http.principal import Principal, require

router = APIRouter(prefix="/v1/venues", tags=["calendars"])
FEED_MAX_AGE_SECONDS = 300


def _not_found() -> NotFound:
    # One answer for an unknown venue, a wrong, missing or rotated token and an archived venue.
    return NotFound("No such calendar.", code="calendar_not_found")


def feed_url(venue_id: uuid.UUID, token: str) -> str:
    return f"{get_settings().base_url.rstrip('/')}/v1/venues/{venue_id}/calendar.ics?token={token}"


@router.get("/{venue_id}/calendar.ics", response_class=Response,
            responses={200: {"content": {"text/calendar": {}}, "description": "iCalendar (RFC 5545) feed"}})
async def venue_calendar(request: Request, venue_id: str,
                         token: str | None = Query(None, description="The venue's secret feed token.")):
    try:
        venue_uuid = uuid.UUID(venue_id)
    except ValueError:
        raise _not_found() from None
    org_id = await service.organization_for_token(venue_uuid, token)
    if org_id is None:
        raise _not_found()
    # From the replica: calendar clients poll, and a feed a moment behind is fine.
    async with read_transaction(DbContext(organization_id=org_id)) as db:
        venue, entries = await service.feed_data(db, org_id, venue_uuid)
    body = venue_feed(venue_name=venue["name"], venue_address=venue["address"], timezone=venue["timezone"],
                      entries=entries)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"Cache-Control": f"private, max-age={FEED_MAX_AGE_SECONDS}", "ETag": etag,
               "Content-Disposition": 'inline; filename="bookings.ics"', "X-Robots-Tag": "noindex, nofollow"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="text/calendar; charset=utf-8", headers=headers)


@router.post("/{venue_id}/calendar-token")
async def rotate_calendar_token(venue_id: uuid.UUID, response: Response,
                                p: Principal = Depends(require("venues.manage"))):
    """Creates the venue's feed token, or replaces it (the old URL stops working at once). The
    token is shown only in this answer; only its hash is kept."""
    async with tenant_transaction(p.db_context()) as db:
        token, existed = await service.rotate_token(db, p.organization_id, venue_id)
        await record(db, "venue.calendar_token_rotated" if existed else "venue.calendar_token_created",
                     organization_id=p.organization_id, target_type="venue", target_id=venue_id,
                     changes={"calendar_token": {"from": "[redacted]" if existed else None, "to": "[redacted]"}})
    response.headers["Cache-Control"] = "no-store"
    url = feed_url(venue_id, token)
    return {"token": token, "url": url, "webcal_url": "webcal://" + url.split("://", 1)[1]}
