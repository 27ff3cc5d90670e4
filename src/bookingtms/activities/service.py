"""Activities: what a venue sells, with its capacity, players range, price and schedule."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.activities.schemas import ActivityCreate, ActivityUpdate
from bookingtms.cache import availability_scope, invalidate_after_commit, venue_scope
from bookingtms.db.engine import as_dicts
from bookingtms.errors import NotFound, ValidationFailed
from bookingtms.http.pagination import keyset, page
from bookingtms.models import activities, venues
from bookingtms.sessions import service as sessions_service

PUBLIC_FIELDS = ("id", "name", "description", "category", "difficulty", "duration_minutes", "capacity",
                 "min_players", "max_players", "price_amount", "child_price_amount", "currency",
                 "cancellation_policy", "image_url")
SESSION_SHAPING = {"schedule", "capacity", "duration_minutes", "price_amount", "currency", "is_active"}


def _forget_cached(db: AsyncConnection, venue_id: uuid.UUID) -> None:
    """Once committed, the venue's cached public page (its activities) and availability (bookable
    activities, prices) are forgotten."""
    invalidate_after_commit(db, venue_scope(venue_id), availability_scope(venue_id))


async def _venue_exists(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID) -> None:
    found = (await db.execute(select(venues.c.id).where(
        venues.c.organization_id == org_id, venues.c.id == venue_id, venues.c.status != "archived"))).first()
    if found is None:
        raise ValidationFailed("venue_id names no venue of this organization.", code="venue_not_found", field="venue_id")


async def create_activity(db: AsyncConnection, org_id: uuid.UUID, data: ActivityCreate) -> dict[str, Any]:
    await _venue_exists(db, org_id, data.venue_id)
    values = data.model_dump(mode="json")
    values["venue_id"] = data.venue_id
    row = (await db.execute(insert(activities).values(organization_id=org_id, **values).returning(activities))).one()
    _forget_cached(db, data.venue_id)
    if data.is_active:
        await sessions_service.reconcile_schedule(db, org_id, row.id)
    return await get_activity(db, org_id, row.id)


async def get_activity(db: AsyncConnection, org_id: uuid.UUID, activity_id: uuid.UUID) -> dict[str, Any]:
    row = (await db.execute(select(activities).where(
        activities.c.organization_id == org_id, activities.c.id == activity_id, activities.c.archived_at.is_(None)))).first()
    if row is None:
        raise NotFound("No such activity.", code="activity_not_found")
    return dict(row._mapping)


async def activity_names(db: AsyncConnection, org_id: uuid.UUID, ids) -> dict[uuid.UUID, str]:
    """Names of the given activities, archived ones included (their past sessions still show)."""
    ids = list(set(ids))
    if not ids:
        return {}
    rows = await db.execute(select(activities.c.id, activities.c.name).where(
        activities.c.organization_id == org_id, activities.c.id.in_(ids)))
    return {r.id: r.name for r in rows}


async def list_activities(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID | None, limit: int,
                          after: list | None) -> dict[str, Any]:
    query = select(activities).where(activities.c.organization_id == org_id, activities.c.archived_at.is_(None))
    if venue_id:
        query = query.where(activities.c.venue_id == venue_id)
    if (key := keyset(after)):
        query = query.where(func.row(activities.c.name, activities.c.id) > func.row(*key))
    rows = as_dicts(await db.execute(query.order_by(activities.c.name, activities.c.id).limit(limit + 1)))
    return page(rows, limit, lambda r: (r["name"], str(r["id"])))


async def update_activity(db: AsyncConnection, org_id: uuid.UUID, activity_id: uuid.UUID,
                          data: ActivityUpdate) -> dict[str, Any]:
    current = (await db.execute(select(activities).where(
        activities.c.organization_id == org_id, activities.c.id == activity_id,
        activities.c.archived_at.is_(None)).with_for_update())).first()
    if current is None:
        raise NotFound("No such activity.", code="activity_not_found")
    changes = {k: v for k, v in data.model_dump(mode="json", exclude_unset=True).items() if v is not None}
    if changes.pop("venue_id", str(current.venue_id)) != str(current.venue_id):
        raise ValidationFailed("An activity cannot move to another venue; create it there instead.",
                               code="venue_change_not_supported", field="venue_id")
    merged = {**current._mapping, **changes}
    if not merged["min_players"] <= merged["max_players"] <= merged["capacity"]:
        raise ValidationFailed("Need min_players <= max_players <= capacity.", field="max_players")
    if changes:
        await db.execute(update(activities).where(activities.c.organization_id == org_id,
                                                  activities.c.id == activity_id).values(**changes))
        _forget_cached(db, current.venue_id)
    if SESSION_SHAPING & changes.keys():
        await sessions_service.reconcile_schedule(db, org_id, activity_id, previous=current)
    return await get_activity(db, org_id, activity_id)


async def set_image(db: AsyncConnection, org_id: uuid.UUID, activity_id: uuid.UUID,
                    image_url: str | None) -> dict[str, Any]:
    """The activity's picture (a /media path from web/images.py, or None to remove it); the venue's
    cached public page forgets the old one. Answers the activity as it was before."""
    current = await get_activity(db, org_id, activity_id)
    await db.execute(update(activities).where(activities.c.organization_id == org_id, activities.c.id == activity_id)
                     .values(image_url=image_url))
    _forget_cached(db, current["venue_id"])
    return current


async def archive_activity(db: AsyncConnection, org_id: uuid.UUID, activity_id: uuid.UUID) -> None:
    """Archived, not deleted: sessions with bookings stay; empty future sessions go."""
    activity = await get_activity(db, org_id, activity_id)
    await db.execute(update(activities).where(activities.c.organization_id == org_id, activities.c.id == activity_id)
                     .values(is_active=False, archived_at=func.now()))
    _forget_cached(db, activity["venue_id"])
    await sessions_service.reconcile_schedule(db, org_id, activity_id)


async def public_activities(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID) -> list[dict[str, Any]]:
    return as_dicts(await db.execute(select(*(activities.c[f] for f in PUBLIC_FIELDS)).where(
        activities.c.organization_id == org_id, activities.c.venue_id == venue_id, activities.c.is_active,
        activities.c.archived_at.is_(None)).order_by(activities.c.name)))


async def edit_activity(db: AsyncConnection, org_id: uuid.UUID, activity_id: uuid.UUID,
                        data: ActivityUpdate) -> tuple[dict[str, Any], dict[str, Any]]:
    """An edit as staff make it (API or dashboard): the row locked, updated, the change audited.
    Returns (before, after)."""
    from bookingtms.audit.service import changed, lock_target, record

    await lock_target(db, "activities", org_id, activity_id)
    before = await get_activity(db, org_id, activity_id)
    after = await update_activity(db, org_id, activity_id, data)
    if (changes := changed(before, after, data.model_fields_set)):
        await record(db, "activity.updated", organization_id=org_id, target_type="activity",
                     target_id=activity_id, changes=changes)
    return before, after
