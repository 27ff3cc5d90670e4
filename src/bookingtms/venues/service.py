"""Venues: locations of an organization, each with its time zone and public embed key."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms import cache
from bookingtms.activities import service as activities_service
from bookingtms.cache import availability_scope, embed_scope, invalidate_after_commit, venue_scope
from bookingtms.db.engine import read_transaction
from bookingtms.errors import Conflict, NotFound
from bookingtms.http.pagination import keyset, page
from bookingtms.models import venues
from bookingtms.platform.limits import check_limit
from bookingtms.venues.schemas import VenueCreate, VenueUpdate

PUBLIC_FIELDS = ("id", "name", "slug", "timezone", "address", "city", "state", "zip", "country", "image_url")


def staff_view(row) -> dict[str, Any]:
    """A venue as staff see it: never the calendar token's hash, only whether a feed exists."""
    venue = dict(row._mapping)
    venue["calendar_feed_enabled"] = venue.pop("calendar_token_hash", None) is not None
    return venue


def _forget_cached(db: AsyncConnection, venue: dict[str, Any]) -> None:
    """Once committed, the venue's cached public page, availability (its time zone shapes the
    window) and embed key lookup (its status) are forgotten."""
    invalidate_after_commit(db, venue_scope(venue["id"]), availability_scope(venue["id"]), embed_scope(venue["embed_key"]))


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50]
    return slug or "venue"


def new_embed_key() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 random bits


async def _free_slug(db: AsyncConnection, org_id: uuid.UUID, wanted: str | None, name: str) -> str:
    base = wanted or slugify(name)
    taken = set((await db.execute(
        select(venues.c.slug).where(venues.c.organization_id == org_id, venues.c.slug.like(f"{base}%"))
    )).scalars())
    if wanted:
        if wanted in taken:
            raise Conflict(f"Another venue already uses the slug '{wanted}'.", code="slug_taken", field="slug")
        return wanted
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


async def create_venue(db: AsyncConnection, org_id: uuid.UUID, data: VenueCreate) -> dict[str, Any]:
    await check_limit(db, org_id, "venues")  # 403 plan_limit_reached at the plan's max_venues
    values = data.model_dump()
    values["slug"] = await _free_slug(db, org_id, data.slug, data.name)
    row = (await db.execute(
        insert(venues).values(organization_id=org_id, embed_key=new_embed_key(), **values).returning(venues)
    )).one()
    return staff_view(row)


async def get_venue(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID) -> dict[str, Any]:
    row = (await db.execute(select(venues).where(
        venues.c.organization_id == org_id, venues.c.id == venue_id, venues.c.status != "archived"))).first()
    if row is None:
        raise NotFound("No such venue.", code="venue_not_found")
    return staff_view(row)


async def list_venues(db: AsyncConnection, org_id: uuid.UUID, limit: int, after: list | None) -> dict[str, Any]:
    query = select(venues).where(venues.c.organization_id == org_id, venues.c.status != "archived")
    if (key := keyset(after)):
        query = query.where(func.row(venues.c.name, venues.c.id) > func.row(*key))
    rows = (await db.execute(query.order_by(venues.c.name, venues.c.id).limit(limit + 1))).all()
    return page([staff_view(r) for r in rows], limit, lambda r: (r["name"], str(r["id"])))


async def update_venue(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID, data: VenueUpdate) -> dict[str, Any]:
    current = await get_venue(db, org_id, venue_id)
    changes = data.model_dump(exclude_unset=True)
    if "slug" in changes and changes["slug"] != current["slug"]:
        changes["slug"] = await _free_slug(db, org_id, changes["slug"], current["name"])
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return current
    row = (await db.execute(update(venues).where(venues.c.organization_id == org_id, venues.c.id == venue_id)
                            .values(**changes).returning(venues))).one()
    _forget_cached(db, current)
    return staff_view(row)


async def archive_venue(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID) -> None:
    """Archived, not deleted: its bookings keep their history, and its embed key stops working."""
    _forget_cached(db, await get_venue(db, org_id, venue_id))
    await db.execute(update(venues).where(venues.c.organization_id == org_id, venues.c.id == venue_id)
                     .values(status="archived"))


async def set_image(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID,
                    image_url: str | None) -> dict[str, Any]:
    """The venue's picture (a /media path from web/images.py, or None to remove it); the cached
    public page forgets the old one. Answers the venue as it was before (its old image_url)."""
    current = await get_venue(db, org_id, venue_id)
    await db.execute(update(venues).where(venues.c.organization_id == org_id, venues.c.id == venue_id)
                     .values(image_url=image_url))
    _forget_cached(db, current)
    return current


async def embed_keys(db: AsyncConnection, org_id: uuid.UUID) -> list[str]:
    """Every embed key of the organization (archived venues' too: their negative lookups are cached)."""
    return list((await db.execute(select(venues.c.embed_key).where(venues.c.organization_id == org_id))).scalars())


async def public_venue_view(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID) -> dict[str, Any]:
    venue = await get_venue(db, org_id, venue_id)
    return {k: venue[k] for k in PUBLIC_FIELDS}


async def edit_venue(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID,
                     data: VenueUpdate) -> dict[str, Any]:
    """An edit as staff make it (API or dashboard): the row locked, updated, the change audited."""
    from bookingtms.audit.service import changed, lock_target, record

    await lock_target(db, "venues", org_id, venue_id)
    before = await get_venue(db, org_id, venue_id)
    after = await update_venue(db, org_id, venue_id, data)
    if (changes := changed(before, after, data.model_fields_set)):
        await record(db, "venue.updated", organization_id=org_id, target_type="venue", target_id=venue_id,
                     changes=changes)
    return after


async def public_page_json(v) -> bytes:
    """The JSON text of the widget's venue page (GET /v1/public/venues/{key}): the venue and its
    bookable activities, cached (`v` is the request's http.public.PublicVenue)."""
    async def compute():
        async with read_transaction(v.db_context()) as db:
            return {"venue": await public_venue_view(db, v.organization_id, v.venue_id),
                    "activities": await activities_service.public_activities(db, v.organization_id, v.venue_id)}

    return await cache.public_venue(v.venue_id, compute)
