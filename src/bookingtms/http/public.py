"""The widget's context: a venue found by its embed key, and its organization (cached in Redis, so
a public request needs no database connection of its own for it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text

from bookingtms import cache
from bookingtms.db.engine import DbContext, lookup_connection
from bookingtms.errors import Forbidden, NotFound


@dataclass(frozen=True)
class PublicVenue:
    organization_id: uuid.UUID
    venue_id: uuid.UUID
    embed_key: str
    timezone: str

    def db_context(self) -> DbContext:
        return DbContext(organization_id=self.organization_id)

    @property
    def scope(self) -> str:
        return f"venue:{self.venue_id}"


async def public_venue(embed_key: str) -> PublicVenue:
    """Dependency for /v1/public/venues/{embed_key}/...: unknown or inactive keys are 404."""
    if not (16 <= len(embed_key) <= 64):
        raise NotFound("No venue has this embed key.", code="venue_not_found")
    # Unknown keys are cached too (as null): a key only starts working through a venue edit, which
    # invalidates it, so a flood of wrong keys does not reach the database.
    found = await cache.embed_lookup(embed_key, lambda: _lookup(embed_key))
    if found is None:
        raise NotFound("No venue has this embed key.", code="venue_not_found")
    if found["organization_status"] != "active":
        raise Forbidden("This business is not taking bookings at the moment.", code="organization_suspended")
    return PublicVenue(organization_id=uuid.UUID(found["organization_id"]), venue_id=uuid.UUID(found["venue_id"]),
                       embed_key=embed_key, timezone=found["timezone"])


async def _lookup(embed_key: str) -> dict | None:
    async with lookup_connection() as conn:
        row = (await conn.execute(text("SELECT * FROM venue_by_embed_key(:k)"), {"k": embed_key})).first()
    return dict(row._mapping) if row else None
