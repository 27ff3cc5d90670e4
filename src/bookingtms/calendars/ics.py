"""Pure iCalendar (RFC 5545) builders. No database access here.

Times are emitted in the venue's IANA time zone: DTSTART/DTEND carry a TZID
parameter and the calendar carries the matching VTIMEZONE component, so
calendar clients show the session at the venue's local wall-clock time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone

PRODID = "-//BookingTMS//BookingTMS Calendar 1.0//EN"
UID_DOMAIN = "bookingtms"


def _zone(timezone: str) -> ZoneInfo:
    return ZoneInfo(timezone)


def _local(value: datetime, zone: ZoneInfo) -> datetime:
    if value.tzinfo is None:
        # Stored session times are UTC (timestamptz); treat naive values as UTC.
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone)


def _new_calendar(name: str | None = None, timezone: str | None = None) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if name:
        cal.add("x-wr-calname", name)
    if timezone:
        cal.add("x-wr-timezone", timezone)
    return cal


@lru_cache(maxsize=512)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> Timezone | None:
    """The VTIMEZONE of `tzid` with its transitions over whole years. Building one walks the zone's
    transitions (a few milliseconds), and every booking email carries one, so each is built once
    per process; a component is only read when a calendar is serialized, so calendars share it."""
    try:
        return Timezone.from_tzid(tzid, first_date=date(first_year, 1, 1), last_date=date(last_year, 12, 31))
    except ValueError:  # a TZID icalendar does not know: the calendar goes without its VTIMEZONE
        return None


def _finish(cal: Calendar, starts: list[datetime]) -> bytes:
    if starts:
        first = min(starts).date() - timedelta(days=400)
        last = max(starts).date() + timedelta(days=400)
    else:
        today = datetime.now(UTC).date()
        first, last = today - timedelta(days=400), today + timedelta(days=400)
    # One VTIMEZONE per TZID in use, with the transitions of the years around the events, placed
    # before the events as icalendar's add_missing_timezones does.
    for tzid in sorted(cal.get_missing_tzids()):
        if (timezone := _vtimezone(tzid, max(first.year, 1970), last.year)) is not None:
            cal.subcomponents.insert(len(cal.timezones), timezone)
    return cal.to_ical()


def _event(
    *,
    uid: str,
    summary: str,
    location: str,
    description: str,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    stamp: datetime,
    status: str = "CONFIRMED",
    sequence: int | None = None,
) -> Event:
    ev = Event()
    ev.add("uid", uid)
    ev.add("dtstamp", stamp)
    ev.add("dtstart", _local(start, zone))
    ev.add("dtend", _local(end, zone))
    ev.add("summary", summary)
    if location:
        ev.add("location", location)
    if description:
        ev.add("description", description)
    ev.add("status", status)
    if sequence is not None:
        ev.add("sequence", sequence)
    return ev


def _location(venue_name: str, venue_address: str | None) -> str:
    parts = [p for p in (venue_name, venue_address) if p]
    return ", ".join(parts)


def booking_calendar(
    *,
    reference: str,
    activity_name: str,
    venue_name: str,
    venue_address: str | None,
    timezone: str,
    start_time: datetime,
    end_time: datetime,
    guests: int,
    description: str = "",
) -> bytes:
    """One-event calendar for a customer's booking (email attachment / download)."""
    zone = _zone(timezone)
    cal = _new_calendar()
    cal.add("method", "PUBLISH")
    lines = [f"Booking {reference}", f"{guests} guest{'s' if guests != 1 else ''}"]
    if description:
        lines.append(description)
    ev = _event(
        uid=f"{reference}@{UID_DOMAIN}",
        summary=f"{activity_name} at {venue_name}",
        location=_location(venue_name, venue_address),
        description="\n".join(lines),
        start=start_time,
        end=end_time,
        zone=zone,
        stamp=datetime.now(UTC),
    )
    cal.add_component(ev)
    return _finish(cal, [_local(start_time, zone)])


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    """One booking as shown in a venue's staff feed."""

    reference: str
    activity_name: str
    start_time: datetime
    end_time: datetime
    status: str  # booking status: pending | confirmed | cancelled | ...
    customer_name: str | None
    guests: int
    updated_at: datetime | None = None
    notes: str | None = None


_STATUS_MAP = {"confirmed": "CONFIRMED", "pending": "TENTATIVE", "cancelled": "CANCELLED"}


def venue_feed(
    *,
    venue_name: str,
    venue_address: str | None,
    timezone: str,
    entries: Iterable[CalendarEntry],
) -> bytes:
    """Staff subscription feed: every booking of one venue as a VEVENT.

    Cancelled bookings are kept with STATUS:CANCELLED so that clients that had
    already synced the event remove/strike it instead of keeping a stale copy.
    """
    zone = _zone(timezone)
    cal = _new_calendar(name=f"{venue_name} bookings", timezone=timezone)
    cal.add("method", "PUBLISH")
    cal.add("refresh-interval", timedelta(minutes=15), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT15M")
    now = datetime.now(UTC)
    starts: list[datetime] = []
    location = _location(venue_name, venue_address)
    for e in entries:
        status = _STATUS_MAP.get(e.status, "CONFIRMED")
        who = e.customer_name or "Guest"
        guests = f"{e.guests} guest{'s' if e.guests != 1 else ''}"
        summary = f"{e.activity_name}: {who} ({guests})"
        if status == "CANCELLED":
            summary = f"CANCELLED - {summary}"
        elif status == "TENTATIVE":
            summary = f"PENDING - {summary}"
        desc = [f"Booking {e.reference}", f"Customer: {who}", f"Party size: {e.guests}", f"Status: {e.status}"]
        if e.notes:
            desc.append(f"Notes: {e.notes}")
        stamp = e.updated_at or now
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        ev = _event(
            uid=f"{e.reference}@{UID_DOMAIN}",
            summary=summary,
            location=location,
            description="\n".join(desc),
            start=e.start_time,
            end=e.end_time,
            zone=zone,
            stamp=stamp.astimezone(UTC),
            status=status,
            sequence=int(stamp.timestamp()) % 2_000_000_000 if e.updated_at else None,
        )
        cal.add_component(ev)
        starts.append(_local(e.start_time, zone))
    return _finish(cal, starts)
