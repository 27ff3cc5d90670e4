"""Query parameters shared by routers: time windows given as dates (in a venue's zone) or
RFC 3339 instants."""

from __future__ import annotations

import inspect
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from bookingtms.errors import ValidationFailed


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant `day` begins in `zone`."""
    return datetime.combine(day, time(), tzinfo=zone)


def is_day(value: str) -> bool:
    """A date ('2026-05-01') rather than a time: no time part."""
    return "T" not in value.upper() and " " not in value


def parse_instant(value: str | None, field: str, zone: ZoneInfo) -> datetime | None:
    """'2026-05-01' is local midnight in `zone`; a datetime without offset is local too."""
    if value is None or value == "":
        return None
    try:
        if is_day(value):
            day = date.fromisoformat(value)
            if not 2000 <= day.year <= 2100:
                raise ValueError
            return local_midnight(day, zone)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if not 2000 <= parsed.year <= 2100:
            raise ValueError
    except ValueError:
        raise ValidationFailed(f"'{field}' must be a date (YYYY-MM-DD) or an RFC 3339 time between 2000 and 2100.",
                               field=field) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def day_or_instant(value: str | None, field: str) -> date | datetime | None:
    """A local day ('2026-05-01') as a date, or an RFC 3339 time as an instant (UTC when it names
    no offset): the filters on days (bookings, dashboard) take either."""
    parsed = parse_instant(value, field, ZoneInfo("UTC"))
    return parsed.date() if parsed is not None and is_day(value) else parsed


def first_day(value: date | datetime | None) -> date | None:
    """The first day a 'from' covers: a date itself, or the day a time names (in its own offset)."""
    return value.date() if isinstance(value, datetime) else value


def last_day(value: date | datetime | None) -> date | None:
    """The last day a 'to' covers: a date includes itself; a time ends the window there, so the
    day it names counts unless the time is that day's very start."""
    if not isinstance(value, datetime):
        return value
    return value.date() - timedelta(days=1) if value.timetz().replace(tzinfo=None) == time() else value.date()


def window(start: str | None, end: str | None, zone: ZoneInfo = ZoneInfo("UTC"), *, default_days: int = 14,
           max_days: int = 92) -> tuple[datetime, datetime]:
    """[from, to) with defaults (now, +default_days); a 'to' given as a date includes that day."""
    begin = parse_instant(start, "from", zone) or datetime.now(timezone.utc)
    finish = window_end(end, zone) or begin + timedelta(days=default_days)
    if finish <= begin:
        raise ValidationFailed("'to' must be after 'from'.", field="to")
    if finish - begin > timedelta(days=max_days):
        raise ValidationFailed(f"The window may span at most {max_days} days.", field="to")
    return begin, finish


def open_window(start: str | None, end: str | None, zone: ZoneInfo = ZoneInfo("UTC"), *,
                max_days: int) -> tuple[datetime | None, datetime | None]:
    """[from, to) for a paginated list: as `window` when both are given, else a bound not given
    stays open (the list runs as far as its cursor goes)."""
    if start and end:
        return window(start, end, zone, max_days=max_days)
    return parse_instant(start, "from", zone), window_end(end, zone)


def window_end(end: str | None, zone: ZoneInfo) -> datetime | None:
    """'to' as the instant the window ends: a date includes that day."""
    finish = parse_instant(end, "to", zone)
    return finish + timedelta(days=1) if finish is not None and is_day(end) else finish


def on_the_loop(cls):
    """`Depends(on_the_loop(Filters))` instead of `Depends()`: FastAPI builds a class dependency in
    its thread pool (a thread hop on every request); this async twin, with the class's parameters,
    builds it on the event loop."""
    async def build(**params):
        return cls(**params)

    build.__signature__ = inspect.signature(cls, eval_str=True)  # annotations resolved where cls lives
    build.__qualname__ = build.__name__ = cls.__name__
    return build
