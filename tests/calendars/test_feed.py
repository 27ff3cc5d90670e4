"""The venue calendar feed over HTTP: a secret, rotatable URL that a calendar client fetches
without any login, listing that venue's bookings at the venue's local times."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from icalendar import Calendar
from sqlalchemy import text

from tests.audit.helpers import audit_rows, send
from tests.factories import add_staff, bearer, book, future_session, make_activity, make_tenant, unique


def feed_path(venue_id: str) -> str:
    return f"/v1/venues/{venue_id}/calendar.ics"


async def new_token(client, tenant, venue_id: str | None = None) -> dict:
    response = await client.post(f"/v1/venues/{venue_id or tenant.venue_id}/calendar-token", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()


def events_by_uid(body: bytes) -> dict:
    return {str(e["uid"]): e for e in Calendar.from_ical(body).walk("VEVENT")}


async def test_feed_shows_this_venues_bookings_in_its_zone(client, tenant, platform_admin, settings, owner_engine):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity, days_ahead=5)
    mine = await book(client, tenant, session["id"], spots=3, email="ann.lee@example.com")
    gone = await book(client, tenant, session["id"], spots=1, email="gone@example.com")
    assert (await client.post(f"/v1/bookings/{gone['id']}/cancel", headers=tenant.headers, json={})).status_code == 200

    # A second venue of the same organization, in another zone, with its own booking.
    other_venue = await client.post("/v1/venues", headers=tenant.headers,
                                    json={"name": unique("venue"), "timezone": "Europe/Berlin"})
    assert other_venue.status_code == 201, other_venue.text
    at_other = replace(tenant, venue_id=other_venue.json()["id"], embed_key=other_venue.json()["embed_key"])
    other_session = await future_session(client, at_other, await make_activity(client, at_other), days_ahead=5)
    elsewhere = await book(client, at_other, other_session["id"], email="elsewhere@example.com")
    # And another organization's booking.
    stranger = await make_tenant(client, platform_admin)
    stranger_session = await future_session(client, stranger, await make_activity(client, stranger), days_ahead=5)
    foreign = await book(client, stranger, stranger_session["id"], email="foreign@example.com")
    await new_token(client, stranger)

    issued = await new_token(client, tenant)
    url = urlsplit(issued["url"])
    assert issued["url"].startswith(settings.base_url.rstrip("/") + feed_path(tenant.venue_id))
    assert parse_qs(url.query) == {"token": [issued["token"]]}
    assert issued["webcal_url"].startswith("webcal://")

    # Fetched the way a calendar client does: a plain GET of the URL, no Authorization header.
    response = await client.get(f"{url.path}?{url.query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    assert "private" in response.headers["cache-control"] and "max-age=" in response.headers["cache-control"]

    cal = Calendar.from_ical(response.content)
    assert [str(z["tzid"]) for z in cal.walk("VTIMEZONE")] == ["America/New_York"]
    events = events_by_uid(response.content)
    assert set(events) == {f"{mine['reference']}@bookingtms"}  # not cancelled, not the other venue / tenant
    for hidden in (gone, elsewhere, foreign):
        assert hidden["reference"] not in response.text
    event = events[f"{mine['reference']}@bookingtms"]
    start = datetime.fromisoformat(session["start_time"])
    assert event["dtstart"].params["TZID"] == "America/New_York"
    local = start.astimezone(ZoneInfo("America/New_York")).replace(tzinfo=None)
    assert event.decoded("dtstart").replace(tzinfo=None) == local
    assert f"DTSTART;TZID=America/New_York:{local:%Y%m%dT%H%M%S}" in response.text
    assert event.decoded("dtend") == datetime.fromisoformat(session["end_time"])
    assert "Customer: Bea Buyer" in str(event["description"]) and "Party size: 3" in str(event["description"])
    assert str(event["status"]) == "CONFIRMED"

    # The other venue has its own feed, in its own zone; this venue's token does not open it.
    assert (await client.get(feed_path(other_venue.json()["id"]),
                             params={"token": issued["token"]})).status_code == 404
    other = await new_token(client, tenant, other_venue.json()["id"])
    other_feed = await client.get(feed_path(other_venue.json()["id"]), params={"token": other["token"]})
    assert set(events_by_uid(other_feed.content)) == {f"{elsewhere['reference']}@bookingtms"}
    assert [str(z["tzid"]) for z in Calendar.from_ical(other_feed.content).walk("VTIMEZONE")] == ["Europe/Berlin"]

    # A booking waiting for payment is shown as tentative.
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE bookings SET status = 'pending_payment' WHERE id = :id"), {"id": mine["id"]})
    again = await client.get(feed_path(tenant.venue_id), params={"token": issued["token"]})
    assert str(events_by_uid(again.content)[f"{mine['reference']}@bookingtms"]["status"]) == "TENTATIVE"


async def test_rotation_kills_the_old_token_and_bad_tokens_look_alike(client, tenant, owner_engine):
    nothing_yet = await client.get(feed_path(tenant.venue_id), params={"token": "x" * 43})
    assert nothing_yet.status_code == 404

    first, rid = await send(client, "POST", f"/v1/venues/{tenant.venue_id}/calendar-token", tenant.headers,
                            expect=200)
    old = first.json()["token"]
    [row] = audit_rows(owner_engine, rid)
    assert (row.action, row.target_type, row.target_id) == ("venue.calendar_token_created", "venue", tenant.venue_id)
    assert old not in str(row.changes)
    fetched = await client.get(feed_path(tenant.venue_id), params={"token": old})
    assert fetched.status_code == 200
    unchanged = await client.get(feed_path(tenant.venue_id), params={"token": old},
                                 headers={"If-None-Match": fetched.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""

    second, rid = await send(client, "POST", f"/v1/venues/{tenant.venue_id}/calendar-token", tenant.headers,
                             expect=200)
    new = second.json()["token"]
    assert new != old
    assert [r.action for r in audit_rows(owner_engine, rid)] == ["venue.calendar_token_rotated"]
    with owner_engine.connect() as conn:  # only a hash is stored
        stored = conn.execute(text("SELECT calendar_token_hash FROM venues WHERE id = :v"),
                              {"v": tenant.venue_id}).scalar_one()
    assert new not in stored and old not in stored

    stale = await client.get(feed_path(tenant.venue_id), params={"token": old})
    wrong = await client.get(feed_path(tenant.venue_id), params={"token": new[:-1] + ("A" if new[-1] != "A" else "B")})
    missing = await client.get(feed_path(tenant.venue_id))
    unknown_venue = await client.get(feed_path("00000000-0000-4000-8000-000000000000"), params={"token": new})
    not_a_uuid = await client.get(feed_path("not-a-venue"), params={"token": new})
    answers = [stale, wrong, missing, unknown_venue, not_a_uuid]
    assert [r.status_code for r in answers] == [404] * 5
    assert len({(r.json()["code"], r.json()["detail"]) for r in answers}) == 1
    assert (await client.get(feed_path(tenant.venue_id), params={"token": new})).status_code == 200

    # An archived venue's feed is gone too.
    assert (await client.delete(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers)).status_code == 204
    archived = await client.get(feed_path(tenant.venue_id), params={"token": new})
    assert archived.status_code == 404 and archived.json()["detail"] == stale.json()["detail"]


async def test_only_venue_managers_issue_tokens(client, tenant, platform_admin):
    staff = await add_staff(client, tenant, "staff")
    refused = await client.post(f"/v1/venues/{tenant.venue_id}/calendar-token", headers=bearer(staff))
    assert refused.status_code == 403
    assert (await client.post(f"/v1/venues/{tenant.venue_id}/calendar-token")).status_code == 401
    stranger = await make_tenant(client, platform_admin)
    cross = await client.post(f"/v1/venues/{tenant.venue_id}/calendar-token", headers=stranger.headers)
    assert cross.status_code == 404
