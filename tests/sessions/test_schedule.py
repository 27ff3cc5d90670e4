"""Weekly schedules in the venue's local time become sessions at the right instants, across DST
changes, and schedule edits never disturb what customers already hold or booked."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bookingtms.activities.schedule import Schedule, expand, local_start
from tests.factories import book, every_day_at, hold, make_activity, make_tenant

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
UTC = timezone.utc


def utc(y, mo, d, h, mi) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value!r} has no UTC offset"
    return parsed


async def generate(client, tenant, activity_id: str, first: str, last: str) -> dict:
    response = await client.post(f"/v1/activities/{activity_id}/sessions/generate", headers=tenant.headers,
                                 json={"from": first, "to": last})
    assert response.status_code == 200, response.text
    return response.json()


async def list_sessions(client, tenant, activity_id: str, start: datetime, end: datetime) -> list[dict]:
    response = await client.get("/v1/sessions", headers=tenant.headers, params={
        "activity_id": activity_id, "from": start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "to": end.astimezone(UTC).isoformat().replace("+00:00", "Z"), "limit": 200})
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def local_day(client, tenant, activity_id: str, day: date, zone: ZoneInfo) -> list[dict]:
    """The activity's sessions that start on `day` in the venue's zone, in start order."""
    start = datetime.combine(day, time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
    return await list_sessions(client, tenant, activity_id, start, end)


async def generate_all(client, tenant, activity_id: str, first: str, last: str, zone: ZoneInfo, slots: int) -> dict:
    """Generates local days first..last and checks every one of `slots` sessions is either created
    now or was already there (the horizon may have reached it), none twice."""
    window = (datetime.combine(date.fromisoformat(first), time(), tzinfo=zone),
              datetime.combine(date.fromisoformat(last) + timedelta(days=1), time(), tzinfo=zone))
    existing = len(await list_sessions(client, tenant, activity_id, *window))
    result = await generate(client, tenant, activity_id, first, last)
    assert result == {"created": slots - existing, "skipped": existing}
    assert len(await list_sessions(client, tenant, activity_id, *window)) == slots
    return result


def starts(sessions: list[dict]) -> list[datetime]:
    return [instant(s["start_time"]) for s in sessions]


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------
def test_local_start_skips_the_spring_forward_gap_and_takes_the_first_of_an_ambiguous_time():
    assert local_start(date(2027, 3, 14), time(1, 30), NEW_YORK) == utc(2027, 3, 14, 6, 30)
    assert local_start(date(2027, 3, 14), time(2, 0), NEW_YORK) is None
    assert local_start(date(2027, 3, 14), time(2, 30), NEW_YORK) is None
    assert local_start(date(2027, 3, 14), time(2, 59), NEW_YORK) is None
    assert local_start(date(2027, 3, 14), time(3, 0), NEW_YORK) == utc(2027, 3, 14, 7, 0)
    assert local_start(date(2027, 3, 14), time(10, 0), NEW_YORK) == utc(2027, 3, 14, 14, 0)
    # 01:30 happens twice on 2027-11-07: first in EDT (05:30Z), then in EST (06:30Z).
    assert local_start(date(2027, 11, 7), time(1, 30), NEW_YORK) == utc(2027, 11, 7, 5, 30)
    assert local_start(date(2027, 11, 7), time(2, 30), NEW_YORK) == utc(2027, 11, 7, 7, 30)
    assert local_start(date(2027, 11, 7), time(10, 0), NEW_YORK) == utc(2027, 11, 7, 15, 0)
    for day in (date(2027, 3, 14), date(2027, 11, 7), date(2027, 7, 1)):
        assert local_start(day, time(2, 30), TOKYO) == datetime.combine(day, time(2, 30), tzinfo=TOKYO)
    result = local_start(date(2027, 1, 5), time(9, 15), NEW_YORK)
    assert result.utcoffset() == timedelta(0), "start times are returned in UTC"


def test_expand_honours_weekdays_dates_and_closed_days():
    schedule = Schedule.model_validate({
        "weekly": [{"days": ["mon", "wed"], "times": ["09:00"]}, {"days": ["sat"], "times": ["15:00", "11:00"]}],
        "start_date": "2027-02-01", "end_date": "2027-02-28", "closed_dates": ["2027-02-10"]})
    result = expand(schedule, NEW_YORK, date(2027, 1, 20), date(2027, 3, 10))
    expected = []
    day = date(2027, 2, 1)
    while day <= date(2027, 2, 28):
        if day != date(2027, 2, 10):
            times = {0: ["09:00"], 2: ["09:00"], 5: ["11:00", "15:00"]}.get(day.weekday(), [])
            expected += [datetime.combine(day, time.fromisoformat(t), tzinfo=NEW_YORK).astimezone(UTC) for t in times]
        day += timedelta(days=1)
    assert result == expected
    assert len(result) == 15
    # The window is intersected with the schedule's own dates.
    assert expand(schedule, NEW_YORK, date(2027, 2, 2), date(2027, 2, 3)) == [utc(2027, 2, 3, 14, 0)]
    assert expand(schedule, NEW_YORK, date(2027, 3, 1), date(2027, 3, 31)) == []


def test_expand_across_both_dst_changes_in_new_york():
    schedule = Schedule.model_validate(every_day_at("02:30", "01:30", "10:00"))
    assert expand(schedule, NEW_YORK, date(2027, 3, 14), date(2027, 3, 14)) == [
        utc(2027, 3, 14, 6, 30), utc(2027, 3, 14, 14, 0)]
    assert expand(schedule, NEW_YORK, date(2027, 11, 7), date(2027, 11, 7)) == [
        utc(2027, 11, 7, 5, 30), utc(2027, 11, 7, 7, 30), utc(2027, 11, 7, 15, 0)]
    tokyo = expand(schedule, TOKYO, date(2027, 3, 14), date(2027, 3, 14))
    assert [s.astimezone(TOKYO).strftime("%H:%M") for s in tokyo] == ["01:30", "02:30", "10:00"]


# ---------------------------------------------------------------------------------------------
# Through the API
# ---------------------------------------------------------------------------------------------
async def test_new_york_sessions_across_spring_forward(client, platform_admin):
    tenant = await make_tenant(client, platform_admin, timezone_name="America/New_York")
    activity = await make_activity(client, tenant, duration_minutes=90, schedule=every_day_at("01:30", "02:30", "10:00"))

    # 3 + 2 + 3: 02:30 does not exist on 2027-03-14
    await generate_all(client, tenant, activity["id"], "2027-03-13", "2027-03-15", NEW_YORK, 8)

    before = await local_day(client, tenant, activity["id"], date(2027, 3, 13), NEW_YORK)
    assert starts(before) == [utc(2027, 3, 13, 6, 30), utc(2027, 3, 13, 7, 30), utc(2027, 3, 13, 15, 0)]
    change = await local_day(client, tenant, activity["id"], date(2027, 3, 14), NEW_YORK)
    assert starts(change) == [utc(2027, 3, 14, 6, 30), utc(2027, 3, 14, 14, 0)]
    after = await local_day(client, tenant, activity["id"], date(2027, 3, 15), NEW_YORK)
    assert starts(after) == [utc(2027, 3, 15, 5, 30), utc(2027, 3, 15, 6, 30), utc(2027, 3, 15, 14, 0)]

    for session in before + change + after:
        assert instant(session["end_time"]) - instant(session["start_time"]) == timedelta(minutes=90)
        assert session["capacity_total"] == session["capacity_remaining"] == 10
    # 01:30 EST + 90 minutes is 04:00 EDT on the wall clock.
    assert instant(change[0]["end_time"]) == utc(2027, 3, 14, 8, 0)
    assert instant(change[0]["end_time"]).astimezone(NEW_YORK).strftime("%H:%M") == "04:00"

    again = await generate(client, tenant, activity["id"], "2027-03-13", "2027-03-15")
    assert again == {"created": 0, "skipped": 8}
    assert len(await local_day(client, tenant, activity["id"], date(2027, 3, 14), NEW_YORK)) == 2


async def test_new_york_sessions_across_fall_back(client, platform_admin):
    tenant = await make_tenant(client, platform_admin, timezone_name="America/New_York")
    activity = await make_activity(client, tenant, duration_minutes=90, schedule=every_day_at("01:30", "02:30", "10:00"))

    await generate_all(client, tenant, activity["id"], "2027-11-06", "2027-11-08", NEW_YORK, 9)

    day = await local_day(client, tenant, activity["id"], date(2027, 11, 7), NEW_YORK)
    assert starts(day) == [utc(2027, 11, 7, 5, 30), utc(2027, 11, 7, 7, 30), utc(2027, 11, 7, 15, 0)]
    first = instant(day[0]["start_time"]).astimezone(NEW_YORK)
    assert first.strftime("%H:%M") == "01:30" and first.utcoffset() == timedelta(hours=-4), "the EDT 01:30"
    for session in day:
        assert instant(session["end_time"]) - instant(session["start_time"]) == timedelta(minutes=90)
    # 01:30 EDT + 90 minutes is 02:00 EST on the wall clock.
    assert instant(day[0]["end_time"]) == utc(2027, 11, 7, 7, 0)
    assert instant(day[0]["end_time"]).astimezone(NEW_YORK).strftime("%H:%M") == "02:00"

    assert starts(await local_day(client, tenant, activity["id"], date(2027, 11, 6), NEW_YORK)) == [
        utc(2027, 11, 6, 5, 30), utc(2027, 11, 6, 6, 30), utc(2027, 11, 6, 14, 0)]
    assert starts(await local_day(client, tenant, activity["id"], date(2027, 11, 8), NEW_YORK)) == [
        utc(2027, 11, 8, 6, 30), utc(2027, 11, 8, 7, 30), utc(2027, 11, 8, 15, 0)]
    assert await generate(client, tenant, activity["id"], "2027-11-06", "2027-11-08") == {"created": 0, "skipped": 9}


async def test_tokyo_has_every_slot_at_plus_nine_all_year(client, platform_admin):
    tenant = await make_tenant(client, platform_admin, timezone_name="Asia/Tokyo")
    activity = await make_activity(client, tenant, duration_minutes=60, schedule=every_day_at("01:30", "02:30", "10:00"))
    await generate_all(client, tenant, activity["id"], "2027-03-14", "2027-03-14", TOKYO, 3)
    await generate_all(client, tenant, activity["id"], "2027-11-07", "2027-11-07", TOKYO, 3)
    for day in (date(2027, 3, 14), date(2027, 11, 7)):
        sessions = await local_day(client, tenant, activity["id"], day, TOKYO)
        local = [instant(s["start_time"]).astimezone(TOKYO) for s in sessions]
        assert [t.strftime("%H:%M") for t in local] == ["01:30", "02:30", "10:00"]
        assert all(t.utcoffset() == timedelta(hours=9) and t.date() == day for t in local)
        assert starts(sessions)[0] == datetime.combine(day - timedelta(days=1), time(16, 30), tzinfo=UTC)
        for session in sessions:
            assert instant(session["end_time"]) - instant(session["start_time"]) == timedelta(minutes=60)


async def test_generation_honours_weekdays_start_end_and_closed_dates(client, tenant):
    schedule = {"weekly": [{"days": ["mon", "wed"], "times": ["09:00"]}, {"days": ["sat"], "times": ["11:00", "15:00"]}],
                "start_date": "2027-02-01", "end_date": "2027-02-28", "closed_dates": ["2027-02-10", "2027-02-20"]}
    activity = await make_activity(client, tenant, schedule=schedule)
    await generate_all(client, tenant, activity["id"], "2027-01-18", "2027-03-14", NEW_YORK, 13)
    sessions = await list_sessions(client, tenant, activity["id"], utc(2027, 1, 10, 0, 0), utc(2027, 3, 20, 0, 0))

    expected = []
    day = date(2027, 2, 1)
    while day <= date(2027, 2, 28):
        if day not in (date(2027, 2, 10), date(2027, 2, 20)):
            for t in {0: ["09:00"], 2: ["09:00"], 5: ["11:00", "15:00"]}.get(day.weekday(), []):
                expected.append(datetime.combine(day, time.fromisoformat(t), tzinfo=NEW_YORK).astimezone(UTC))
        day += timedelta(days=1)
    assert starts(sessions) == expected
    assert len(expected) == 13
    assert await generate(client, tenant, activity["id"], "2027-01-18", "2027-03-14") == {"created": 0, "skipped": 13}


async def test_generation_never_creates_past_sessions(client, tenant):
    activity = await make_activity(client, tenant, schedule=every_day_at("10:00"))
    result = await generate(client, tenant, activity["id"], "2026-10-01", "2026-10-31")
    assert result == {"created": 0, "skipped": 0}
    assert await list_sessions(client, tenant, activity["id"], utc(2026, 9, 30, 0, 0), utc(2026, 11, 2, 0, 0)) == []


# ---------------------------------------------------------------------------------------------
# Schedule edits
# ---------------------------------------------------------------------------------------------
def _day_ahead(days: int) -> date:
    return datetime.now(NEW_YORK).date() + timedelta(days=days)


def _at(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=NEW_YORK).astimezone(UTC)


async def _patch(client, tenant, activity_id: str, body: dict) -> dict:
    response = await client.patch(f"/v1/activities/{activity_id}", headers=tenant.headers, json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_schedule_change_keeps_booked_and_held_sessions_and_adds_new_times(client, tenant):
    activity = await make_activity(client, tenant, capacity=10, price_amount=2500,
                                   schedule=every_day_at("10:00", "14:00", "18:00"))
    day = _day_ahead(3)
    sessions = {instant(s["start_time"]): s for s in await local_day(client, tenant, activity["id"], day, NEW_YORK)}
    booked, held, untouched = sessions[_at(day, "10:00")], sessions[_at(day, "14:00")], sessions[_at(day, "18:00")]

    booking = await book(client, tenant, booked["id"], spots=2)
    reservation = await hold(client, tenant, held["id"], spots=1)
    assert reservation.status_code == 201, reservation.text

    await _patch(client, tenant, activity["id"], {"schedule": every_day_at("12:00")})

    after = {s["id"]: s for s in await local_day(client, tenant, activity["id"], day, NEW_YORK)}
    assert untouched["id"] not in after
    gone = await client.get(f"/v1/sessions/{untouched['id']}", headers=tenant.headers)
    assert gone.status_code == 404
    for before, remaining in ((booked, 8), (held, 9)):
        kept = after[before["id"]]
        assert kept["start_time"] == before["start_time"] and kept["end_time"] == before["end_time"]
        assert (kept["capacity_total"], kept["capacity_remaining"]) == (10, remaining)
        assert kept["price_at_generation"] == 2500 and not kept["is_closed"]
    new = [s for s in after.values() if instant(s["start_time"]) == _at(day, "12:00")]
    assert len(new) == 1 and new[0]["capacity_remaining"] == 10
    assert starts(await local_day(client, tenant, activity["id"], day + timedelta(days=1), NEW_YORK)) == [
        _at(day + timedelta(days=1), "12:00")]

    # The booking and the hold are still good.
    got = await client.get(f"/v1/bookings/{booking['id']}", headers=tenant.headers)
    assert got.json()["status"] == "confirmed"
    done = await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations/{reservation.json()['reservation_id']}"
                             "/checkout", json={"customer": {"email": "buyer@example.com", "first_name": "B",
                                                             "last_name": "B"}})
    assert done.status_code == 201, done.text

    # Capacity and price changes reach the untouched session, not the booked ones.
    await _patch(client, tenant, activity["id"], {"capacity": 12, "max_players": 12, "price_amount": 3000})
    after = {s["id"]: s for s in await local_day(client, tenant, activity["id"], day, NEW_YORK)}
    assert (after[new[0]["id"]]["capacity_total"], after[new[0]["id"]]["capacity_remaining"]) == (12, 12)
    assert after[new[0]["id"]]["price_at_generation"] == after[new[0]["id"]]["price_amount"] == 3000
    assert (after[booked["id"]]["capacity_total"], after[booked["id"]]["capacity_remaining"]) == (10, 8)
    assert (after[held["id"]]["capacity_total"], after[held["id"]]["capacity_remaining"]) == (10, 9)
    assert after[booked["id"]]["price_at_generation"] == after[held["id"]]["price_at_generation"] == 2500

    public = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability", params={
        "activity_id": activity["id"], "from": day.isoformat(), "to": day.isoformat()})
    prices = {s["id"]: s["price_amount"] for s in public.json()["sessions"]}
    assert prices[new[0]["id"]] == 3000


async def test_a_time_removed_and_restored_is_bookable_again(client, tenant):
    """A slot whose hold was released (so nobody holds or booked it) is closed when its time leaves
    the schedule; when the time comes back, customers must be able to book that slot again."""
    activity = await make_activity(client, tenant, capacity=6, schedule=every_day_at("10:00", "14:00"))
    day = _day_ahead(3)
    ten = {instant(s["start_time"]): s for s in await local_day(client, tenant, activity["id"], day, NEW_YORK)}[
        _at(day, "10:00")]
    held = await hold(client, tenant, ten["id"], spots=1)
    assert held.status_code == 201
    released = await client.delete(f"/v1/public/venues/{tenant.embed_key}/reservations/{held.json()['reservation_id']}")
    assert released.status_code == 204

    await _patch(client, tenant, activity["id"], {"schedule": every_day_at("14:00")})
    await _patch(client, tenant, activity["id"], {"schedule": every_day_at("10:00", "14:00")})

    public = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability", params={
        "activity_id": activity["id"], "from": day.isoformat(), "to": day.isoformat()})
    assert sorted(instant(s["start_time"]) for s in public.json()["sessions"]) == [
        _at(day, "10:00"), _at(day, "14:00")], "the restored 10:00 slot is not offered to customers"


async def test_an_activity_edit_keeps_sessions_generated_beyond_the_horizon(client, tenant):
    """Staff generated next spring's sessions explicitly; changing the price must reprice them, not
    delete them until the horizon job happens to reach those dates again."""
    activity = await make_activity(client, tenant, price_amount=2000, schedule=every_day_at("10:00"))
    await generate_all(client, tenant, activity["id"], "2027-04-01", "2027-04-03", NEW_YORK, 3)
    window = (utc(2027, 4, 1, 0, 0), utc(2027, 4, 5, 0, 0))
    before = await list_sessions(client, tenant, activity["id"], *window)

    await _patch(client, tenant, activity["id"], {"price_amount": 2600})

    after = await list_sessions(client, tenant, activity["id"], *window)
    assert [s["id"] for s in after] == [s["id"] for s in before], "generated sessions vanished after a price change"
    assert all(s["price_at_generation"] == 2600 for s in after)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def _fields(response) -> list[str]:
    return [e["field"] for e in response.json().get("errors", [])]


@pytest.mark.parametrize("schedule, field, mentions", [
    ({"weekly": [{"days": ["funday"], "times": ["10:00"]}]}, "schedule.weekly.0.days", "fun"),
    ({"weekly": [{"days": ["mon", "xyz"], "times": ["10:00"]}]}, "schedule.weekly.0.days", "xyz"),
    ({"weekly": [{"days": ["mon"], "times": ["25:00"]}]}, "schedule.weekly.0.times", "25:00"),
    ({"weekly": [{"days": ["mon"], "times": ["10:61"]}]}, "schedule.weekly.0.times", "10:61"),
    ({"weekly": [{"days": ["mon"], "times": ["ten"]}]}, "schedule.weekly.0.times", "ten"),
    ({"weekly": [{"days": ["mon"], "times": ["10:00"]}], "start_date": "2027-03-01", "end_date": "2027-02-01"},
     "schedule", "end_date"),
    ({"weekly": [], "closed_dates": ["2027-02-30"]}, "schedule.closed_dates.0", ""),
])
async def test_bad_schedules_are_422_naming_the_field(client, tenant, schedule, field, mentions):
    response = await client.post("/v1/activities", headers=tenant.headers, json={
        "venue_id": tenant.venue_id, "name": "Bad schedule", "duration_minutes": 60, "capacity": 4,
        "price_amount": 1000, "schedule": schedule})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in _fields(response), body
    assert mentions in str(body["errors"])

    activity = await make_activity(client, tenant, schedule=every_day_at("10:00"))
    patched = await client.patch(f"/v1/activities/{activity['id']}", headers=tenant.headers, json={"schedule": schedule})
    assert patched.status_code == 422 and field in _fields(patched), patched.text
    unchanged = await client.get(f"/v1/activities/{activity['id']}", headers=tenant.headers)
    assert unchanged.json()["schedule"]["weekly"] == every_day_at("10:00")["weekly"]


@pytest.mark.parametrize("schedule", [
    {"weekly": [{"days": ["mon"], "times": ["10:00"]}], "closed_date": ["2027-02-01"]},
    {"weekly": [{"days": ["mon"], "times": ["10:00"], "time_zone": "UTC"}]},
])
async def test_unknown_schedule_fields_are_rejected_not_ignored(client, tenant, schedule):
    """A misspelt key (closed_date for closed_dates) must not silently open the venue on a
    closed day."""
    response = await client.post("/v1/activities", headers=tenant.headers, json={
        "venue_id": tenant.venue_id, "name": "Typo", "duration_minutes": 60, "capacity": 4, "price_amount": 1000,
        "schedule": schedule})
    assert response.status_code == 422, response.text
    assert any(f.startswith("schedule") for f in _fields(response))


async def test_generate_window_is_validated(client, tenant):
    activity = await make_activity(client, tenant, schedule=every_day_at("10:00"))
    url = f"/v1/activities/{activity['id']}/sessions/generate"
    backwards = await client.post(url, headers=tenant.headers, json={"from": "2027-02-01", "to": "2027-01-01"})
    assert backwards.status_code == 422 and backwards.json()["code"] == "validation_error"
    too_long = await client.post(url, headers=tenant.headers, json={"from": "2027-01-01", "to": "2028-06-01"})
    assert too_long.status_code == 422
    not_a_date = await client.post(url, headers=tenant.headers, json={"from": "soon", "to": "2027-01-01"})
    assert not_a_date.status_code == 422 and "from" in _fields(not_a_date)


async def test_a_window_given_by_one_end_stays_open_at_the_other(client, tenant):
    """`from` alone lists every session from then on, `to` alone every one before (page by page):
    a bound the caller did not give is not made up."""
    activity = await make_activity(client, tenant, schedule=every_day_at("10:00"))
    today = datetime.now(UTC).date()

    async def starts(**params) -> list[datetime]:
        found, cursor = [], None
        while True:
            response = await client.get("/v1/sessions", headers=tenant.headers, params={
                "activity_id": activity["id"], "limit": 25, **params, **({"cursor": cursor} if cursor else {})})
            assert response.status_code == 200, response.text
            found += [datetime.fromisoformat(s["start_time"]) for s in response.json()["items"]]
            if not (cursor := response.json()["next_cursor"]):
                return found

    everything = await starts()
    assert len(everything) > 40  # the generation horizon reaches weeks ahead
    later = await starts(**{"from": (today + timedelta(days=20)).isoformat()})
    assert later and later == [s for s in everything if s.date() >= today + timedelta(days=20)]
    assert max(later) - min(later) > timedelta(days=14)
    cut = min(later).astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert await starts(to=cut) == [s for s in everything if s < min(later)]
