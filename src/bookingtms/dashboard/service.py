"""Dashboard statistics. Read from the `daily_stats` roll-ups only (kept by triggers in the
booking transaction, migration 0005): a window of a year is at most a few rows per activity and
day of one organization, through the table's primary key, whatever the number of bookings."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import column, func, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.errors import NotFound, ValidationFailed

DEFAULT_DAYS = 30
MAX_DAYS = 366
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)

# The roll-up table as this module reads it (written only by the database's triggers).
daily_stats = table("daily_stats", *(column(name) for name in (
    "organization_id", "day", "venue_id", "activity_id", "currency", "bookings", "guests", "revenue_amount",
    "cancellations", "capacity", "occupancy_guests")))

COUNTS = ("bookings", "guests", "cancellations", "capacity", "occupancy_guests")


def window(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """[first, last], both inclusive: the last 30 days up to today by default; one end given, the
    30 days from or up to it. At most MAX_DAYS days."""
    for name, value in (("from", first), ("to", last)):
        if value is not None and not EARLIEST <= value <= LATEST:
            raise ValidationFailed(f"'{name}' must be a date between {EARLIEST} and {LATEST}.", field=name)
    span = timedelta(days=DEFAULT_DAYS - 1)
    if first is None and last is None:
        last = today
    first = first if first is not None else last - span
    last = last if last is not None else first + span
    if last < first:
        raise ValidationFailed("'to' must not be before 'from'.", field="to")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValidationFailed(f"The window may span at most {MAX_DAYS} days.", field="to")
    return first, last


def stats_query(org_id: uuid.UUID, first: date, last: date, venue_id: uuid.UUID | None, currency: str):
    """The window's figures per day: a range read of the primary key (organization_id, day, ...)."""
    d = daily_stats.c
    query = (
        select(d.day, *(func.sum(d[name]).label(name) for name in COUNTS),
               func.coalesce(func.sum(d.revenue_amount).filter(d.currency == currency), 0).label("revenue_amount"))
        .where(d.organization_id == org_id, d.day.between(first, last))
        .group_by(d.day)
    )
    return query.where(d.venue_id == venue_id) if venue_id is not None else query


def _occupancy(guests: int, capacity: int) -> float | None:
    return round(guests / capacity, 4) if capacity else None


def _figures(row: dict[str, int]) -> dict[str, Any]:
    return {"bookings": row["bookings"], "guests": row["guests"], "revenue_amount": row["revenue_amount"],
            "cancellations": row["cancellations"], "capacity": row["capacity"],
            "occupancy": _occupancy(row["occupancy_guests"], row["capacity"])}


async def stats(db: AsyncConnection, org_id: uuid.UUID, *, first: date | None, last: date | None,
                venue_id: uuid.UUID | None, currency: str | None) -> dict[str, Any]:
    zone = ZoneInfo("UTC")
    if venue_id is not None:
        tz = (await db.execute(text("SELECT timezone FROM venues WHERE organization_id = :org AND id = :id"),
                               {"org": org_id, "id": venue_id})).scalar_one_or_none()
        if tz is None:
            raise NotFound("No such venue.", code="venue_not_found")
        zone = ZoneInfo(tz)
    first, last = window(first, last, datetime.now(timezone.utc).astimezone(zone).date())
    if currency is None:
        currency = (await db.execute(text("SELECT currency FROM organizations WHERE id = :org"),
                                     {"org": org_id})).scalar_one()
    found = {row.day: {k: int(v) for k, v in row._mapping.items() if k != "day"}
             for row in await db.execute(stats_query(org_id, first, last, venue_id, currency))}
    zero = dict.fromkeys((*COUNTS, "revenue_amount"), 0)
    days, totals = [], dict(zero)
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        row = found.get(day, zero)
        totals = {k: totals[k] + row[k] for k in totals}
        days.append({"date": day, **_figures(row)})
    return {"from": first, "to": last, "venue_id": venue_id, "currency": currency, "totals": _figures(totals),
            "days": days}
