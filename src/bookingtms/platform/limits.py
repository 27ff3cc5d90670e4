"""The plan's limits (plans.max_staff, max_venues, max_bookings per month), checked before a write
that adds one more of something. Call `check_limit` in the same transaction as the insert.

A plan value of NULL means unlimited (no lock, no count). Otherwise the check takes a
transaction-scoped advisory lock per (organization, kind), so two concurrent requests cannot both
see room for the last slot; the lock is released at commit or rollback."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.errors import Forbidden, NotFound
from bookingtms.models import bookings, organizations, plans, users, venues

Kind = Literal["staff", "venues", "bookings_per_month"]

# kind -> (the plans column, how the limit is named to the caller, what is counted)
_PLAN_COLUMN = {"staff": plans.c.max_staff, "venues": plans.c.max_venues, "bookings_per_month": plans.c.max_bookings}
_LIMIT_NAME = {"staff": "max_staff", "venues": "max_venues", "bookings_per_month": "max_bookings"}
_WHAT = {"staff": "active staff members", "venues": "venues", "bookings_per_month": "bookings this month"}

# The calendar month in UTC (as the platform's statistics count it).
_MONTH_START = text("(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')")


@dataclass(frozen=True)
class Usage:
    kind: str
    limit: int | None  # None: unlimited
    used: int | None  # not counted when unlimited
    plan: str


# What is counted, and each kind's plan limit, as statements built once (SQLAlchemy memoizes a
# statement's cache key): every hold and checkout runs two of them.
_ORG = bindparam("org_id")
_COUNTS = {
    "staff": select(func.count()).select_from(users).where(users.c.organization_id == _ORG, users.c.is_active),
    "venues": select(func.count()).select_from(venues).where(venues.c.organization_id == _ORG,
                                                             venues.c.status != "archived"),
    "bookings_per_month": select(func.count()).select_from(bookings).where(
        bookings.c.organization_id == _ORG, bookings.c.status != "cancelled", bookings.c.created_at >= _MONTH_START),
}
_PLAN_LIMITS = {kind: select(column.label("limit"), plans.c.slug)
                .join_from(organizations, plans, plans.c.id == organizations.c.plan_id).where(organizations.c.id == _ORG)
                for kind, column in _PLAN_COLUMN.items()}


async def _count(db: AsyncConnection, org_id: uuid.UUID, kind: str) -> int:
    return (await db.execute(_COUNTS[kind], {"org_id": org_id})).scalar_one()


async def _plan_limit(db: AsyncConnection, org_id: uuid.UUID, kind: str):
    if kind not in _PLAN_LIMITS:
        raise ValueError(f"unknown limit kind {kind!r}; expected one of {sorted(_PLAN_LIMITS)}")
    row = (await db.execute(_PLAN_LIMITS[kind], {"org_id": org_id})).first()
    if row is None:
        raise NotFound("No such organization.", code="organization_not_found")
    return row


async def usage(db: AsyncConnection, org_id: uuid.UUID, kind: Kind) -> Usage:
    """The plan's limit for `kind` and how much of it is used (no lock)."""
    row = await _plan_limit(db, org_id, kind)
    used = None if row.limit is None else await _count(db, org_id, kind)
    return Usage(kind=kind, limit=row.limit, used=used, plan=row.slug)


async def check_limit(db: AsyncConnection, org_id: uuid.UUID, kind: Kind, adding: int = 1,
                      lock: bool = True) -> Usage:
    """Raises 403 `plan_limit_reached` (naming the limit) if adding `adding` more of `kind` would
    go over the organization's plan; otherwise returns the usage before the addition. One query
    when the plan is unlimited."""
    row = await _plan_limit(db, org_id, kind)
    if row.limit is None:
        return Usage(kind=kind, limit=None, used=None, plan=row.slug)
    if lock:  # without it a limit may be passed by the requests in flight at that moment
        await db.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                         {"k": f"plan_limit:{kind}:{org_id}"})
    # Counted after the lock, so it sees what the previous holder committed.
    current = Usage(kind=kind, limit=row.limit, used=await _count(db, org_id, kind), plan=row.slug)
    if current.used + adding > current.limit:
        name = _LIMIT_NAME[kind]
        raise Forbidden(f"The {current.plan} plan allows {current.limit} {_WHAT[kind]} ({name}); "
                        f"{current.used} are in use. Upgrade the plan to add more.",
                        code="plan_limit_reached", limit=name, kind=kind, maximum=current.limit, current=current.used,
                        plan=current.plan)
    return current
