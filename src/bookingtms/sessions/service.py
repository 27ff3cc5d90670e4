"""Sessions: the time slots of an activity, each with its own capacity.

Capacity invariant (DESIGN.md): capacity_remaining = capacity_total - spots of 'held'
reservations - guests of non-cancelled bookings. So a session whose remaining equals its total
has no live hold or booking, and only such sessions are ever changed by a schedule edit."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.activities.schedule import Schedule, expand
from bookingtms.cache import availability_day_scope, availability_scope, invalidate_after_commit
from bookingtms.config import get_settings
from bookingtms.db.engine import as_dicts
from bookingtms.errors import Conflict, NotFound, PreconditionFailed, SoldOut, ValidationFailed
from bookingtms.http.pagination import keyset, page
from bookingtms.http.params import local_midnight
from bookingtms.models import activities, activity_sessions, venues

SESSION_FIELDS = ("id", "activity_id", "venue_id", "start_time", "end_time", "capacity_total",
                  "capacity_remaining", "price_at_generation", "currency", "is_closed", "version")
# The staff's session, with its price also as `price_amount` (the name public availability gives it).
SESSION_COLUMNS = (*(activity_sessions.c[f] for f in SESSION_FIELDS),
                   activity_sessions.c.price_at_generation.label("price_amount"))

# New slots are inserted; a slot closed only because it had left the schedule is reopened.
_INSERT_SESSIONS = text("""
    INSERT INTO activity_sessions (organization_id, activity_id, venue_id, start_time, end_time,
                                   capacity_total, capacity_remaining, price_at_generation, currency)
    SELECT :org, :activity, :venue, t, t + make_interval(mins => :duration), :capacity, :capacity, :price, :currency
      FROM unnest(:starts) AS t
    ON CONFLICT (organization_id, activity_id, start_time) DO UPDATE
       SET is_closed = false, closed_by_schedule = false, version = activity_sessions.version + 1
     WHERE activity_sessions.closed_by_schedule
    RETURNING 1
""").bindparams(bindparam("starts", type_=ARRAY(TIMESTAMP(timezone=True))))

# Future sessions the current schedule no longer has, and that nobody holds or booked: deleted
# when nothing ever referred to them, else closed (their history stays).
_DROP_UNSCHEDULED = text("""
    WITH gone AS (
      SELECT s.id, EXISTS (SELECT 1 FROM slot_reservations r WHERE r.organization_id = s.organization_id AND r.session_id = s.id)
                OR EXISTS (SELECT 1 FROM bookings b WHERE b.organization_id = s.organization_id AND b.session_id = s.id) AS referenced
        FROM activity_sessions s
       WHERE s.organization_id = :org AND s.activity_id = :activity AND s.start_time > now()
         AND s.capacity_remaining = s.capacity_total AND NOT (s.start_time = ANY(:starts))
         FOR UPDATE OF s
    ), deleted AS (
      DELETE FROM activity_sessions s USING gone
       WHERE s.organization_id = :org AND s.id = gone.id AND NOT gone.referenced
      RETURNING s.id
    )
    UPDATE activity_sessions s SET is_closed = true, closed_by_schedule = true, version = s.version + 1
      FROM gone WHERE s.organization_id = :org AND s.id = gone.id AND gone.referenced AND NOT s.is_closed
""").bindparams(bindparam("starts", type_=ARRAY(TIMESTAMP(timezone=True))))

# After an activity edit, untouched future sessions that still carry the activity's previous
# capacity, price and duration take the new ones; a session staff changed one by one keeps its own.
_REFRESH_UNTOUCHED = text("""
    UPDATE activity_sessions s
       SET capacity_total = :capacity, capacity_remaining = :capacity, price_at_generation = :price,
           currency = :currency, end_time = s.start_time + make_interval(mins => :duration), version = s.version + 1
     WHERE s.organization_id = :org AND s.activity_id = :activity AND s.start_time > now()
       AND s.capacity_remaining = s.capacity_total
       AND s.capacity_total = :old_capacity AND s.price_at_generation = :old_price
       AND s.currency = CAST(:old_currency AS char(3)) AND s.end_time = s.start_time + make_interval(mins => :old_duration)
       AND (s.capacity_total, s.price_at_generation, s.currency, s.end_time)
           IS DISTINCT FROM (:capacity, :price, CAST(:currency AS char(3)), s.start_time + make_interval(mins => :duration))
""")


async def _activity_with_zone(db: AsyncConnection, org_id: uuid.UUID, activity_id: uuid.UUID):
    row = (await db.execute(
        select(activities, venues.c.timezone)
        .join(venues, (venues.c.organization_id == activities.c.organization_id) & (venues.c.id == activities.c.venue_id))
        .where(activities.c.organization_id == org_id, activities.c.id == activity_id)
    )).first()
    if row is None:
        raise NotFound("No such activity.", code="activity_not_found")
    return row


def _future_starts(activity, first_day: date, last_day: date) -> list[datetime]:
    now = datetime.now(timezone.utc)
    schedule = Schedule.model_validate(activity.schedule or {})
    return [s for s in expand(schedule, ZoneInfo(activity.timezone), first_day, last_day) if s > now]


def _shape(activity) -> dict[str, Any]:
    return {"capacity": activity.capacity, "price": activity.price_amount, "currency": activity.currency,
            "duration": activity.duration_minutes}


def capacity_changed(db: AsyncConnection, *venue_ids: uuid.UUID) -> None:
    """The venues' cached public availability goes once this transaction commits. Every change of
    a session's capacity, closing or existence calls it."""
    invalidate_after_commit(db, *(availability_scope(v) for v in venue_ids))


def session_capacity_changed(db: AsyncConnection, venue_id: uuid.UUID, local_day: date) -> None:
    """A hold, booking or their end moved one session's capacity: only the cached availability of
    its local day goes (the venue's other days stay cached)."""
    invalidate_after_commit(db, availability_day_scope(venue_id, local_day))


async def _insert(db: AsyncConnection, org_id: uuid.UUID, activity, starts: list[datetime]) -> int:
    if not starts:
        return 0
    result = await db.execute(_INSERT_SESSIONS, {"org": org_id, "activity": activity.id, "venue": activity.venue_id,
                                                 "starts": starts, **_shape(activity)})
    return len(result.all())


async def generate(db: AsyncConnection, org_id: uuid.UUID, activity_id: uuid.UUID,
                   first_day: date, last_day: date) -> dict[str, int]:
    """Creates the scheduled sessions of local days first_day..last_day that do not exist yet."""
    activity = await _activity_with_zone(db, org_id, activity_id)
    if not activity.is_active or activity.archived_at is not None:
        raise Conflict("An inactive activity has no sessions to generate.", code="activity_unavailable")
    starts = _future_starts(activity, first_day, last_day)
    created = await _insert(db, org_id, activity, starts)
    if created:
        capacity_changed(db, activity.venue_id)
    return {"created": created, "skipped": len(starts) - created}


async def reconcile_schedule(db: AsyncConnection, org_id: uuid.UUID, activity_id: uuid.UUID,
                             previous=None) -> None:
    """Brings future sessions in line with the activity's schedule, over the horizon and as far as
    sessions were ever generated; sessions with holds or bookings are never deleted or moved.
    `previous` (the activity row before an edit) lets untouched sessions follow that edit."""
    activity = await _activity_with_zone(db, org_id, activity_id)
    zone = ZoneInfo(activity.timezone)
    today = datetime.now(zone).date()
    furthest = (await db.execute(select(func.max(activity_sessions.c.start_time)).where(
        activity_sessions.c.organization_id == org_id, activity_sessions.c.activity_id == activity_id))).scalar()
    until = today + timedelta(days=get_settings().session_horizon_days)
    if furthest is not None:
        until = max(until, furthest.astimezone(zone).date())
    live = activity.is_active and activity.archived_at is None
    starts = _future_starts(activity, today, until) if live else []
    params = {"org": org_id, "activity": activity_id}
    await db.execute(_DROP_UNSCHEDULED, {**params, "starts": starts})
    if live and previous is not None:
        old = {f"old_{k}": v for k, v in _shape(previous).items()}
        await db.execute(_REFRESH_UNTOUCHED, {**params, **_shape(activity), **old})
    if live:
        await _insert(db, org_id, activity, starts)
    await db.execute(activities.update().where(activities.c.organization_id == org_id, activities.c.id == activity_id)
                     .values(sessions_generated_until=until))
    capacity_changed(db, activity.venue_id)


async def extend_horizon(db: AsyncConnection, org_id: uuid.UUID, until: date, batch: int = 100) -> int:
    """Job step: generates ahead for this organization's activities whose horizon is short.
    SKIP LOCKED lets several workers share the work."""
    due = (await db.execute(
        select(activities.c.id).where(
            activities.c.organization_id == org_id, activities.c.is_active, activities.c.archived_at.is_(None),
            (activities.c.sessions_generated_until.is_(None)) | (activities.c.sessions_generated_until < until))
        .limit(batch).with_for_update(skip_locked=True)
    )).scalars().all()
    for activity_id in due:
        await reconcile_schedule(db, org_id, activity_id)
    return len(due)


# --------------------------------------------------------------------------------------------
# Reading and editing sessions
# --------------------------------------------------------------------------------------------
async def get_session(db: AsyncConnection, org_id: uuid.UUID, session_id: uuid.UUID) -> dict[str, Any]:
    row = (await db.execute(select(*SESSION_COLUMNS).where(
        activity_sessions.c.organization_id == org_id, activity_sessions.c.id == session_id))).first()
    if row is None:
        raise NotFound("No such session.", code="session_not_found")
    return dict(row._mapping)


async def list_sessions(db: AsyncConnection, org_id: uuid.UUID, *, activity_id: uuid.UUID | None,
                        venue_id: uuid.UUID | None, start: datetime | None, end: datetime | None,
                        available: bool | None, limit: int, after: list | None) -> dict[str, Any]:
    s = activity_sessions.c
    query = select(*SESSION_COLUMNS).where(s.organization_id == org_id)
    if activity_id:
        query = query.where(s.activity_id == activity_id)
    if venue_id:
        query = query.where(s.venue_id == venue_id)
    if start:
        query = query.where(s.start_time >= start)
    if end:
        query = query.where(s.start_time < end)
    if available:
        query = query.where(s.capacity_remaining > 0, ~s.is_closed, s.start_time > func.now())
    if (key := keyset(after, datetime)):
        query = query.where(func.row(s.start_time, s.id) > func.row(*key))
    rows = as_dicts(await db.execute(query.order_by(s.start_time, s.id).limit(limit + 1)))
    return page(rows, limit, lambda r: (r["start_time"].isoformat(), str(r["id"])))


_EDIT_SESSION = text("""
    UPDATE activity_sessions
       SET capacity_total = :total,
           capacity_remaining = capacity_remaining + (:total - capacity_total),
           is_closed = :closed, closed_by_schedule = false, version = version + 1
     WHERE organization_id = :org AND id = :id AND version = :version
       AND capacity_remaining + (:total - capacity_total) >= 0
    RETURNING id
""")


async def edit_session(db: AsyncConnection, org_id: uuid.UUID, session_id: uuid.UUID, expected_version: int,
                       capacity_total: int | None, is_closed: bool | None) -> dict[str, Any]:
    """A conditional update: applies only at `expected_version`, and never takes capacity_total
    below what is held and booked."""
    current = await get_session(db, org_id, session_id)
    total = current["capacity_total"] if capacity_total is None else capacity_total
    closed = current["is_closed"] if is_closed is None else is_closed
    done = (await db.execute(_EDIT_SESSION, {"org": org_id, "id": session_id, "version": expected_version,
                                             "total": total, "closed": closed})).first()
    if done is None:
        now = await get_session(db, org_id, session_id)
        if now["version"] != expected_version:
            raise PreconditionFailed(f"The session is at version {now['version']}, not {expected_version}; reload it.",
                                     current_version=now["version"])
        taken = now["capacity_total"] - now["capacity_remaining"]
        raise Conflict(f"{taken} spots are held or booked; capacity_total cannot go below that.",
                       code="capacity_below_booked", capacity_taken=taken)
    capacity_changed(db, current["venue_id"])
    return await get_session(db, org_id, session_id)


MAX_AVAILABLE = 5000  # sessions in one availability answer
MAX_AVAILABILITY_ROWS = 20_000  # sessions read to fill the missing days of one request


def _availability_query():
    s, a = activity_sessions.c, activities.c
    return (
        select(s.id, s.activity_id, s.start_time, s.end_time, s.capacity_total, s.capacity_remaining,
               s.price_at_generation.label("price_amount"), s.currency)
        .join_from(activity_sessions, activities, (a.organization_id == s.organization_id) & (a.id == s.activity_id))
        .where(s.organization_id == bindparam("org_id"), s.venue_id == bindparam("venue_id"), ~s.is_closed,
               s.start_time > func.now(), s.start_time >= bindparam("begin"), s.start_time < bindparam("end"),
               a.is_active, a.archived_at.is_(None))
        .order_by(s.start_time, s.id).limit(bindparam("row_cap"))
    )


# Built once: SQLAlchemy memoizes a statement's cache key, so a cache miss skips rebuilding it.
_AVAILABILITY = _availability_query()


async def availability_by_day(db: AsyncConnection, org_id: uuid.UUID, venue_id: uuid.UUID, zone: ZoneInfo,
                              days: list[date]) -> dict[date, list[dict[str, Any]]]:
    """Each of `days` (local to the venue's `zone`) with its open, future sessions of bookable
    activities, sold-out ones included, ordered by start: what the public availability is cut
    from (cached day by day)."""
    first, last = min(days), max(days)
    rows = as_dicts(await db.execute(_AVAILABILITY, {
        "org_id": org_id, "venue_id": venue_id, "begin": local_midnight(first, zone),
        "end": local_midnight(last + timedelta(days=1), zone), "row_cap": MAX_AVAILABILITY_ROWS + 1}))
    if len(rows) > MAX_AVAILABILITY_ROWS:  # a day cut short must not be cached as if it were whole
        raise ValidationFailed(f"These dates hold more than {MAX_AVAILABILITY_ROWS:,} sessions; ask for fewer days.",
                               code="window_too_large", field="to")
    by_day: dict[date, list[dict[str, Any]]] = {d: [] for d in days}
    for row in rows:
        day = row["start_time"].astimezone(zone).date()
        if day in by_day:
            by_day[day].append(row)
    return by_day


def local_days(begin: datetime, end: datetime, zone: ZoneInfo) -> list[date]:
    """The venue's local days that [begin, end) touches."""
    first = begin.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def cut_availability(day_texts: list[bytes], begin: datetime, end: datetime, activity_id: uuid.UUID | None,
                     only_available: bool) -> bytes:
    """The JSON list a request asked for, from its days' cached JSON: sessions in [begin, end) that
    have not started yet, of the activity if one was named, with room left if asked."""
    now = datetime.now(timezone.utc)
    activity = str(activity_id) if activity_id else None
    chosen = []
    for day in day_texts:
        for session in orjson.loads(day):
            starts = datetime.fromisoformat(session["start_time"])
            if (now < starts and begin <= starts < end and (activity is None or session["activity_id"] == activity)
                    and (not only_available or session["capacity_remaining"] > 0)):
                chosen.append(session)
                if len(chosen) == MAX_AVAILABLE:
                    return orjson.dumps(chosen)
    return orjson.dumps(chosen)


# --------------------------------------------------------------------------------------------
# Capacity: the only two statements that move capacity_remaining on the booking path.
# --------------------------------------------------------------------------------------------
_TAKE = text("""
    UPDATE activity_sessions
       SET capacity_remaining = capacity_remaining - :n, version = version + 1
     WHERE organization_id = :org AND id = :id AND NOT is_closed AND start_time > now()
       AND capacity_remaining >= :n
    RETURNING capacity_remaining
""")

_RETURN = text("""
    UPDATE activity_sessions s
       SET capacity_remaining = s.capacity_remaining + :n, version = s.version + 1
      FROM venues v
     WHERE s.organization_id = :org AND s.id = :id AND v.organization_id = s.organization_id AND v.id = s.venue_id
    RETURNING s.venue_id, (s.start_time AT TIME ZONE v.timezone)::date AS local_date
""")

_BOOKABLE = text("""
    SELECT s.id, s.activity_id, s.venue_id, s.start_time, s.end_time, s.capacity_remaining, s.is_closed,
           s.price_at_generation, s.currency, s.start_time <= now() AS started,
           a.name AS activity_name, a.min_players, a.max_players, a.is_active AND a.archived_at IS NULL AS bookable,
           a.cancellation_policy, v.timezone, v.name AS venue_name,
           (s.start_time AT TIME ZONE v.timezone)::date AS local_date
      FROM activity_sessions s
      JOIN activities a ON a.organization_id = s.organization_id AND a.id = s.activity_id
      JOIN venues v ON v.organization_id = s.organization_id AND v.id = s.venue_id
     WHERE s.organization_id = :org AND s.id = :id
""")


async def bookable_session(db: AsyncConnection, org_id: uuid.UUID, session_id: uuid.UUID,
                           venue_id: uuid.UUID | None = None):
    """The session with what booking it needs to know; 404 if absent (or of another venue)."""
    row = (await db.execute(_BOOKABLE, {"org": org_id, "id": session_id})).first()
    if row is None or (venue_id is not None and row.venue_id != venue_id):
        raise NotFound("No such session.", code="session_not_found")
    return row


def check_party_size(session, spots: int, field: str) -> None:
    if not session.min_players <= spots <= session.max_players:
        raise ValidationFailed(
            f"{field} must be between {session.min_players} and {session.max_players} for this activity.",
            code="invalid_party_size", field=field, min_players=session.min_players, max_players=session.max_players)


async def take_capacity(db: AsyncConnection, org_id: uuid.UUID, session, spots: int) -> int:
    """One atomic conditional UPDATE: succeeds only while enough capacity is left, so concurrent
    buyers can never oversell. Returns what remains."""
    if not session.bookable:
        raise Conflict("This activity is not taking bookings.", code="activity_unavailable")
    left = (await db.execute(_TAKE, {"org": org_id, "id": session.id, "n": spots})).scalar_one_or_none()
    if left is not None:
        session_capacity_changed(db, session.venue_id, session.local_date)
        return left
    now = await bookable_session(db, org_id, session.id)
    if now.started:
        raise ValidationFailed("This session has already started.", code="session_started", field="session_id")
    if now.is_closed:
        raise Conflict("This session is closed for booking.", code="session_closed")
    raise SoldOut(f"Only {now.capacity_remaining} spots are left.", capacity_remaining=now.capacity_remaining)


async def return_capacity(db: AsyncConnection, org_id: uuid.UUID, session_id: uuid.UUID, spots: int) -> None:
    returned = (await db.execute(_RETURN, {"org": org_id, "id": session_id, "n": spots})).first()
    if returned is not None:
        session_capacity_changed(db, returned.venue_id, returned.local_date)
