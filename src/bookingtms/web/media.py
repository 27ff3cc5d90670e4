"""Pictures: uploading an activity's or a venue's picture from the dashboard, removing it, and
serving the stored files at /media/<key>.

POST /admin/activities/{id}/image (activities.manage) and /admin/venues/{id}/image (venues.manage)
take a multipart form with the file in `image`; .../image/remove takes the picture away. Each goes
back (303) to the `next` path it came from with a message; a refused file gets an error page that
says why. A body larger than the limit is refused from its Content-Length (or as soon as it has
sent too much), before the form is parsed, the CSRF check included.

GET /media/<key> is not a page path: plain 404s. Keys are content-addressed, so the answer is
immutable for a year; from S3 the object is proxied (the CSP allows images from 'self' only)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog
from fastapi import Depends, Request
from fastapi.routing import APIRoute, APIRouter
from sqlalchemy import select
from starlette.responses import Response

from bookingtms.activities import service as activities_service
from bookingtms.audit.service import diff, lock_target, record
from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.errors import NotFound
from bookingtms.http.principal import Principal
from bookingtms.models import activities, venues
from bookingtms.venues import service as venues_service
from bookingtms.web import images, session
from bookingtms.web.forms import form_data
from bookingtms.web.templating import redirect

log = structlog.get_logger("bookingtms.media")
MAX_BODY = images.MAX_BYTES + 64 * 1024  # the file plus the form's other fields and multipart framing


def _capped(receive, limit: int):
    """The request's receive(), refusing a body (chunked, or lying about its length) past `limit`."""
    seen = 0

    async def capped_receive():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise images.too_large()
        return message

    return capped_receive


class _UploadRoute(APIRoute):
    """Refuses an oversized POST before anything (the CSRF check parses forms) reads its body."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            if request.method == "POST":
                length = request.headers.get("content-length", "")
                if length.isdigit() and int(length) > MAX_BODY:
                    raise images.too_large()
                request = Request(request.scope, _capped(request.receive, MAX_BODY))
            return await handler(request)

        return limited


router = APIRouter(route_class=_UploadRoute)

# owner -> (the API's permission, the table, its service, the audit target type, where to go back to)
OWNERS: dict[str, tuple[str, Any, Any, str, str]] = {
    "activities": ("activities.manage", activities, activities_service, "activity", "/admin/activities/{id}"),
    "venues": ("venues.manage", venues, venues_service, "venue", "/admin/settings"),
}


def _back(next_url: str, fallback: str) -> str:
    """Only a path of this site (no //host, scheme or backslash tricks)."""
    if next_url.startswith("/") and not next_url.startswith("//") and "\\" not in next_url and len(next_url) < 2000:
        return next_url
    return fallback


async def _change(request: Request, p: Principal, owner: str, owner_id: uuid.UUID, image_url: str | None) -> str | None:
    """Sets (or clears) the picture in one transaction, audited; answers the previous URL."""
    _, table, service, target_type, _ = OWNERS[owner]
    async with tenant_transaction(p.db_context()) as db:
        await lock_target(db, table.name, p.organization_id, owner_id)
        before = await service.set_image(db, p.organization_id, owner_id, image_url)
        if before.get("image_url") != image_url:
            await record(db, f"{target_type}.updated", organization_id=p.organization_id, target_type=target_type,
                         target_id=owner_id, changes=diff({"image_url": before.get("image_url")},
                                                          {"image_url": image_url}))
    return before.get("image_url")


async def _discard_if_unused(org_id: uuid.UUID, url: str | None) -> None:
    """Deletes an old picture's files once no venue or activity of the organization shows it (the
    same picture may be used twice: its key is its content)."""
    if not url:
        return
    try:
        async with tenant_transaction(DbContext(organization_id=org_id)) as db:
            used = (await db.execute(
                select(venues.c.id).where(venues.c.organization_id == org_id, venues.c.image_url == url)
                .union_all(select(activities.c.id).where(activities.c.organization_id == org_id,
                                                         activities.c.image_url == url)).limit(1))).first()
        if used is None:
            await images.discard(url)
    except Exception:  # a file left behind is harmless; the change itself has been made
        log.warning("picture_not_discarded", url=url, exc_info=True)


async def _exists(p: Principal, owner: str, owner_id: uuid.UUID) -> None:
    """404 for an id that is not this organization's (nothing is stored for it)."""
    _, _, service, _, _ = OWNERS[owner]
    async with tenant_transaction(p.db_context()) as db:
        if owner == "activities":
            await service.get_activity(db, p.organization_id, owner_id)
        else:
            await service.get_venue(db, p.organization_id, owner_id)


async def _upload(request: Request, p: Principal, owner: str, owner_id: uuid.UUID) -> Response:
    form = await form_data(request)
    back = _back(form.text("next"), OWNERS[owner][4].format(id=owner_id))
    await _exists(p, owner, owner_id)
    upload = form.file("image")
    if upload is None:
        raise images.refused("Choose a picture to upload (JPEG, PNG or WebP).", "image_missing")
    data = await images.read_upload(upload)
    picture = await asyncio.to_thread(images.process, data)
    url = await images.store(p.organization_id, picture)
    previous = await _change(request, p, owner, owner_id, url)
    if previous != url:
        await _discard_if_unused(p.organization_id, previous)
    return redirect(request, back, flash=f"Picture saved ({picture.width} x {picture.height} pixels).")


async def _remove(request: Request, p: Principal, owner: str, owner_id: uuid.UUID) -> Response:
    form = await form_data(request)
    back = _back(form.text("next"), OWNERS[owner][4].format(id=owner_id))
    previous = await _change(request, p, owner, owner_id, None)
    await _discard_if_unused(p.organization_id, previous)
    return redirect(request, back, flash="Picture removed." if previous else "There was no picture to remove.")


@router.post("/admin/activities/{owner_id}/image")
async def upload_activity_image(request: Request, owner_id: uuid.UUID,
                                p: Principal = Depends(session.require_page("activities.manage"))):
    return await _upload(request, p, "activities", owner_id)


@router.post("/admin/activities/{owner_id}/image/remove")
async def remove_activity_image(request: Request, owner_id: uuid.UUID,
                                p: Principal = Depends(session.require_page("activities.manage"))):
    return await _remove(request, p, "activities", owner_id)


@router.post("/admin/venues/{owner_id}/image")
async def upload_venue_image(request: Request, owner_id: uuid.UUID,
                             p: Principal = Depends(session.require_page("venues.manage"))):
    return await _upload(request, p, "venues", owner_id)


@router.post("/admin/venues/{owner_id}/image/remove")
async def remove_venue_image(request: Request, owner_id: uuid.UUID,
                             p: Principal = Depends(session.require_page("venues.manage"))):
    return await _remove(request, p, "venues", owner_id)


# ----------------------------------------------------------------------------------------------
# Serving
# ----------------------------------------------------------------------------------------------
@router.api_route("/media/{key:path}", methods=["GET", "HEAD"])
async def media(request: Request, key: str):
    if not images.valid_key(key):
        raise NotFound("No such picture.")
    tag = images.etag(key)
    headers = {"Cache-Control": images.CACHE_CONTROL, "ETag": tag}
    if tag in (t.strip() for t in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=headers)
    data = await images.storage().get(key)
    if data is None:
        raise NotFound("No such picture.")
    return Response(b"" if request.method == "HEAD" else data, media_type=images.content_type(key),
                    headers={**headers, "Content-Length": str(len(data))})
