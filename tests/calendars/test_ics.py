"""The .ics documents themselves (no database): they parse with icalendar and show the session at
the venue's local time, with the venue's time zone definition inside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar

from bookingtms.calendars import CalendarEntry, booking_calendar, venue_feed


def _events(cal: Calendar) -> list:
    return [c for c in cal.walk("VEVENT")]


def test_booking_calendar_is_one_event_in_the_venues_zone():
    start = datetime(2031, 7, 4, 22, 30, tzinfo=UTC)  # 18:30 in New York (EDT)
    body = booking_calendar(reference="ABCDE-FGHJK", activity_name="Escape Room", venue_name="Downtown",
                            venue_address="1 Main St, Springfield", timezone="America/New_York",
                            start_time=start, end_time=start + timedelta(minutes=60), guests=4,
                            description="Arrive 10 minutes early.")
    assert isinstance(body, bytes)
    text = body.decode()
    assert "DTSTART;TZID=America/New_York:20310704T183000" in text
    assert "DTEND;TZID=America/New_York:20310704T193000" in text

    cal = Calendar.from_ical(body)
    assert str(cal["version"]) == "2.0" and "BookingTMS" in str(cal["prodid"])
    zones = cal.walk("VTIMEZONE")
    assert [str(z["tzid"]) for z in zones] == ["America/New_York"]
    [event] = _events(cal)
    assert str(event["uid"]) == "ABCDE-FGHJK@bookingtms"
    assert event.decoded("dtstamp").tzinfo is not None
    assert str(event["summary"]) == "Escape Room at Downtown"
    assert str(event["location"]) == "Downtown, 1 Main St, Springfield"
    assert "ABCDE-FGHJK" in str(event["description"]) and "4 guests" in str(event["description"])
    assert "Arrive 10 minutes early." in str(event["description"])
    dtstart = event.decoded("dtstart")
    assert dtstart == start and dtstart.utcoffset() == timedelta(hours=-4)
    assert event["dtstart"].params["TZID"] == "America/New_York"
    assert event.decoded("dtend") - dtstart == timedelta(minutes=60)


def test_uid_is_stable_and_winter_times_use_standard_offset():
    start = datetime(2031, 1, 10, 9, 0, tzinfo=UTC)
    kwargs = {"reference": "ZZZZZ-22222", "activity_name": "A", "venue_name": "V", "venue_address": None,
              "timezone": "Europe/Berlin", "start_time": start, "end_time": start + timedelta(hours=1), "guests": 1}
    first, second = Calendar.from_ical(booking_calendar(**kwargs)), Calendar.from_ical(booking_calendar(**kwargs))
    assert str(_events(first)[0]["uid"]) == str(_events(second)[0]["uid"]) == "ZZZZZ-22222@bookingtms"
    event = _events(first)[0]
    assert event.decoded("dtstart").replace(tzinfo=None) == datetime(2031, 1, 10, 10, 0)  # CET, +01:00
    assert "1 guest" in str(event["description"]) and "1 guests" not in str(event["description"])
    assert "location" in event and str(event["location"]) == "V"


def test_venue_feed_lists_every_entry_with_customer_and_party_size():
    zone = ZoneInfo("Asia/Tokyo")
    base = datetime(2031, 3, 1, 1, 0, tzinfo=UTC)
    entries = [
        CalendarEntry(reference="AAAAA-AAAAA", activity_name="Room 1", start_time=base,
                      end_time=base + timedelta(hours=1), status="confirmed", customer_name="Ann Lee", guests=3),
        CalendarEntry(reference="BBBBB-BBBBB", activity_name="Room 2", start_time=base + timedelta(days=1),
                      end_time=base + timedelta(days=1, hours=2), status="pending", customer_name=None, guests=1,
                      updated_at=datetime(2031, 2, 1, tzinfo=UTC)),
    ]
    cal = Calendar.from_ical(venue_feed(venue_name="Tokyo Hall", venue_address="Chiyoda", timezone="Asia/Tokyo",
                                        entries=entries))
    assert [str(z["tzid"]) for z in cal.walk("VTIMEZONE")] == ["Asia/Tokyo"]
    by_uid = {str(e["uid"]): e for e in _events(cal)}
    assert set(by_uid) == {"AAAAA-AAAAA@bookingtms", "BBBBB-BBBBB@bookingtms"}
    first = by_uid["AAAAA-AAAAA@bookingtms"]
    assert first.decoded("dtstart").replace(tzinfo=None) == base.astimezone(zone).replace(tzinfo=None)
    assert first["dtstart"].params["TZID"] == "Asia/Tokyo"
    assert "Customer: Ann Lee" in str(first["description"]) and "Party size: 3" in str(first["description"])
    assert str(first["status"]) == "CONFIRMED"
    second = by_uid["BBBBB-BBBBB@bookingtms"]
    assert str(second["status"]) == "TENTATIVE"
    assert second.decoded("dtstamp") == datetime(2031, 2, 1, tzinfo=UTC)


def test_empty_feed_is_still_a_valid_calendar():
    cal = Calendar.from_ical(venue_feed(venue_name="Quiet", venue_address=None, timezone="America/Chicago",
                                        entries=[]))
    assert _events(cal) == []
    assert str(cal["x-wr-timezone"]) == "America/Chicago"


def test_each_calendar_defines_its_zone_around_its_own_dates():
    """A calendar client applies the VTIMEZONE's rules: bookings years apart (and built one after
    the other in one process) each carry the daylight-saving changes around their own date."""
    for year in (2027, 2034):
        start = datetime(year, 7, 4, 22, 30, tzinfo=UTC)
        body = booking_calendar(reference="ABCDE-FGHJK", activity_name="Escape Room", venue_name="Downtown",
                                venue_address="", timezone="America/New_York", start_time=start,
                                end_time=start + timedelta(minutes=60), guests=2)
        [zone] = Calendar.from_ical(body).walk("VTIMEZONE")
        rules = zone.to_tz(lookup_tzid=False)  # the zone as the file defines it
        assert datetime(year, 7, 4, 18, 30, tzinfo=rules).utcoffset() == timedelta(hours=-4)
        assert datetime(year, 1, 4, 18, 30, tzinfo=rules).utcoffset() == timedelta(hours=-5)
