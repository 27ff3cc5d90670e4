"""The widget's reads are cached (PRD 3.3.1) and every change that affects them shows at once.

"Served from the cache" is shown by changing the database directly (owner_engine, bypassing the
app and so its invalidations): the change stays invisible until the app itself changes something,
and the hit counter moves."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client import REGISTRY
from sqlalchemy import text

from bookingtms import cache
from tests.factories import book, future_session, hold, make_activity, make_tenant


def hits(cache: str) -> float:
    return REGISTRY.get_sample_value("bookingtms_cache_hits_total", {"cache": cache}) or 0.0


async def availability(client, tenant, **params) -> dict[str, dict]:
    response = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability", params=params)
    assert response.status_code == 200, response.text
    return {s["id"]: s for s in response.json()["sessions"]}


async def venue_page(client, tenant) -> dict:
    response = await client.get(f"/v1/public/venues/{tenant.embed_key}")
    assert response.status_code == 200, response.text
    return response.json()


def db(owner_engine, sql: str, **params) -> None:
    with owner_engine.begin() as conn:
        conn.execute(text(sql), params)


async def edit_session(client, tenant, session_id: str, body: dict) -> dict:
    etag = (await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)).headers["etag"]
    response = await client.patch(f"/v1/sessions/{session_id}", json=body, headers={**tenant.headers, "If-Match": etag})
    assert response.status_code == 200, response.text
    return response.json()


async def test_availability_is_served_from_the_cache_until_the_app_changes_it(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=8, price_amount=2500)
    session = await future_session(client, tenant, activity)
    assert (await availability(client, tenant))[session["id"]]["price_amount"] == 2500

    db(owner_engine, "UPDATE activity_sessions SET price_at_generation = 9999 WHERE id = :s", s=session["id"])
    before = hits("availability")
    assert (await availability(client, tenant))[session["id"]]["price_amount"] == 2500  # the cached answer
    assert hits("availability") == before + 1

    await edit_session(client, tenant, session["id"], {"capacity_total": 9})  # a change through the app
    fresh = (await availability(client, tenant))[session["id"]]
    assert (fresh["price_amount"], fresh["capacity_total"], fresh["capacity_remaining"]) == (9999, 9, 9)


async def test_holds_releases_bookings_and_cancellations_show_at_once(client, tenant):
    activity = await make_activity(client, tenant, capacity=8)
    session = await future_session(client, tenant, activity)
    sid = session["id"]
    assert (await availability(client, tenant))[sid]["capacity_remaining"] == 8

    held = await hold(client, tenant, sid, spots=3)
    assert held.status_code == 201, held.text
    assert (await availability(client, tenant))[sid]["capacity_remaining"] == 5
    released = await client.delete(f"/v1/public/venues/{tenant.embed_key}/reservations/{held.json()['reservation_id']}")
    assert released.status_code == 204
    assert (await availability(client, tenant))[sid]["capacity_remaining"] == 8

    booking = await book(client, tenant, sid, spots=2)
    assert (await availability(client, tenant))[sid]["capacity_remaining"] == 6
    cancelled = await client.post(f"/v1/bookings/{booking['id']}/cancel", headers=tenant.headers, json={"refund": "none"})
    assert cancelled.status_code == 200, cancelled.text
    assert (await availability(client, tenant))[sid]["capacity_remaining"] == 8
    # Every answer above came after a change; an unchanged venue is answered from the cache.
    before = hits("availability")
    await availability(client, tenant)
    assert hits("availability") == before + 1


async def test_an_expired_hold_shows_at_once(client, tenant, owner_engine):
    from bookingtms.reservations.jobs import expire_holds

    activity = await make_activity(client, tenant, capacity=8)
    sid = (await future_session(client, tenant, activity))["id"]
    held = await hold(client, tenant, sid, spots=3)
    assert held.status_code == 201, held.text
    assert (await availability(client, tenant))[sid]["capacity_remaining"] == 5
    db(owner_engine, "UPDATE slot_reservations SET expires_at = now() - interval '1 second' WHERE id = :r",
       r=held.json()["reservation_id"])
    assert await expire_holds() >= 3
    assert (await availability(client, tenant))[sid]["capacity_remaining"] == 8


async def test_session_edits_show_at_once(client, tenant):
    activity = await make_activity(client, tenant, capacity=8)
    session = await future_session(client, tenant, activity)
    await availability(client, tenant, available="true")

    await edit_session(client, tenant, session["id"], {"capacity_total": 4})
    shown = (await availability(client, tenant, available="true"))[session["id"]]
    assert (shown["capacity_total"], shown["capacity_remaining"]) == (4, 4)

    await edit_session(client, tenant, session["id"], {"is_closed": True})
    assert session["id"] not in await availability(client, tenant, available="true")
    await edit_session(client, tenant, session["id"], {"is_closed": False})
    assert session["id"] in await availability(client, tenant, available="true")


async def test_activity_edits_show_at_once_in_availability_and_on_the_venue_page(client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=6, price_amount=2000)
    session = await future_session(client, tenant, activity)
    await availability(client, tenant)
    page = await venue_page(client, tenant)
    assert [a["price_amount"] for a in page["activities"]] == [2000]

    db(owner_engine, "UPDATE activities SET description = 'changed behind the app' WHERE id = :a", a=activity["id"])
    before = hits("venue")
    assert (await venue_page(client, tenant))["activities"][0]["description"] != "changed behind the app"
    assert hits("venue") == before + 1

    response = await client.patch(f"/v1/activities/{activity['id']}", headers=tenant.headers, json={"price_amount": 3100})
    assert response.status_code == 200, response.text
    assert (await venue_page(client, tenant))["activities"][0]["price_amount"] == 3100
    assert (await availability(client, tenant))[session["id"]]["price_amount"] == 3100

    response = await client.patch(f"/v1/activities/{activity['id']}", headers=tenant.headers, json={"is_active": False})
    assert response.status_code == 200, response.text
    assert (await venue_page(client, tenant))["activities"] == []
    assert await availability(client, tenant) == {}

    second = await make_activity(client, tenant, capacity=4)  # a new activity is on the page at once
    assert [a["id"] for a in (await venue_page(client, tenant))["activities"]] == [second["id"]]
    assert await availability(client, tenant)
    assert (await client.delete(f"/v1/activities/{second['id']}", headers=tenant.headers)).status_code == 204
    assert (await venue_page(client, tenant))["activities"] == [] and await availability(client, tenant) == {}


async def test_generated_sessions_show_at_once(client, tenant):
    activity = await make_activity(client, tenant, capacity=5)
    first = (datetime.now(timezone.utc) + timedelta(days=75)).date()
    window = {"from": first.isoformat(), "to": (first + timedelta(days=1)).isoformat()}
    assert await availability(client, tenant, **window) == {}  # beyond the 60-day horizon: none yet

    response = await client.post(f"/v1/activities/{activity['id']}/sessions/generate", headers=tenant.headers,
                                 json={"from": window["from"], "to": window["to"]})
    assert response.status_code == 200 and response.json()["created"] > 0, response.text
    assert len(await availability(client, tenant, **window)) == response.json()["created"]


async def test_venue_edits_show_at_once(client, tenant):
    await make_activity(client, tenant)
    page = await venue_page(client, tenant)
    await availability(client, tenant)

    response = await client.patch(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers,
                                  json={"name": "Renamed Venue", "timezone": "Europe/Paris"})
    assert response.status_code == 200, response.text
    renamed = (await venue_page(client, tenant))["venue"]
    assert (renamed["name"], renamed["timezone"]) == ("Renamed Venue", "Europe/Paris") != (page["venue"]["name"],
                                                                                          page["venue"]["timezone"])

    response = await client.patch(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers, json={"status": "inactive"})
    assert response.status_code == 200, response.text
    for path in ("", "/availability"):
        gone = await client.get(f"/v1/public/venues/{tenant.embed_key}{path}")
        assert gone.status_code == 404 and gone.json()["code"] == "venue_not_found", gone.text
    response = await client.patch(f"/v1/venues/{tenant.venue_id}", headers=tenant.headers, json={"status": "active"})
    assert response.status_code == 200, response.text
    assert (await venue_page(client, tenant))["venue"]["name"] == "Renamed Venue"


async def test_organization_suspension_applies_to_the_widget_at_once(client, platform_admin, owner_engine):
    tenant = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    await venue_page(client, tenant)

    # Suspended behind the app's back: the cached lookup still says active (proof it is cached).
    db(owner_engine, "UPDATE organizations SET status = 'suspended' WHERE id = :o", o=tenant.organization_id)
    assert (await client.get(f"/v1/public/venues/{tenant.embed_key}")).status_code == 200
    db(owner_engine, "UPDATE organizations SET status = 'active' WHERE id = :o", o=tenant.organization_id)

    org = f"/v1/platform/organizations/{tenant.organization_id}"
    response = await client.patch(org, headers=platform_admin.headers, json={"status": "suspended"})
    assert response.status_code == 200, response.text
    for response in (await client.get(f"/v1/public/venues/{tenant.embed_key}"),
                     await client.get(f"/v1/public/venues/{tenant.embed_key}/availability"),
                     await hold(client, tenant, session["id"])):
        assert response.status_code == 403 and response.json()["code"] == "organization_suspended", response.text

    response = await client.patch(org, headers=platform_admin.headers, json={"status": "active"})
    assert response.status_code == 200, response.text
    assert (await hold(client, tenant, session["id"])).status_code == 201


async def test_a_cached_answer_leaves_out_sessions_that_started_since(client, tenant, owner_engine):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    soon = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    db(owner_engine, "UPDATE activity_sessions SET start_time = :t, end_time = :t + interval '1 hour' WHERE id = :s",
       t=soon, s=session["id"])
    await cache.invalidate(cache.availability_scope(tenant.venue_id))  # the move was made behind the app
    assert session["id"] in await availability(client, tenant)

    while datetime.now(timezone.utc) <= soon:
        await availability(client, tenant)  # keep reading the cached answer while the session starts
    before = hits("availability")
    assert session["id"] not in await availability(client, tenant)
    assert hits("availability") == before + 1  # still the cached answer, filtered


async def test_unknown_embed_keys_are_404_and_bad_queries_422_every_time(client, tenant):
    for _ in range(2):
        response = await client.get("/v1/public/venues/no-such-embed-key-0000/availability")
        assert response.status_code == 404 and response.json()["code"] == "venue_not_found"
        response = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability", params={"from": "soon"})
        assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")


async def test_a_hold_moves_only_its_day_and_every_query_shares_the_cached_days(client, tenant, owner_engine):
    """Availability is cached per local day of the venue: a hold on one day leaves the other days
    cached, and requests for other windows or one activity are cut from the same days."""
    activity = await make_activity(client, tenant, capacity=8, price_amount=2500)
    first = await future_session(client, tenant, activity, days_ahead=3)
    second = await future_session(client, tenant, activity, days_ahead=4)
    await availability(client, tenant)  # the default window (two weeks): caches every day of it
    db(owner_engine, "UPDATE activity_sessions SET price_at_generation = 9999 WHERE id IN (:a, :b)",
       a=first["id"], b=second["id"])  # behind the app: shows only where a day is computed afresh

    assert (await hold(client, tenant, first["id"], spots=2)).status_code == 201
    shown = await availability(client, tenant)
    assert (shown[first["id"]]["capacity_remaining"], shown[first["id"]]["price_amount"]) == (6, 9999)  # its day: fresh
    assert (shown[second["id"]]["capacity_remaining"], shown[second["id"]]["price_amount"]) == (8, 2500)  # still cached

    before = hits("availability")
    day = second["start_time"][:10]
    one_day = await availability(client, tenant, activity_id=activity["id"], available="true", **{"from": day, "to": day})
    assert list(one_day) == [s for s in one_day if one_day[s]["start_time"][:10] == day] and second["id"] in one_day
    assert hits("availability") == before + 1  # cut from the cached day


async def test_a_window_with_too_many_sessions_is_refused_not_cut_short(client, tenant, monkeypatch):
    """Days are cached whole or not at all: dates holding more sessions than one request may read
    are a clear 422 naming `to`, and nothing of them is cached."""
    from bookingtms.sessions import service as sessions_service

    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    day = session["start_time"][:10]
    that_day = await availability(client, tenant, **{"from": day, "to": day})
    monkeypatch.setattr(sessions_service, "MAX_AVAILABILITY_ROWS", len(that_day))  # that day, not two weeks
    await cache.invalidate(cache.availability_scope(tenant.venue_id))
    refused = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability")  # two weeks of sessions
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "window_too_large" and refused.json()["field"] == "to"
    one = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability", params={"from": day, "to": day})
    assert one.status_code == 200 and session["id"] in {s["id"] for s in one.json()["sessions"]}


async def test_a_venue_created_inactive_stays_off_the_widget_until_opened(client, tenant):
    """API.md's venue fields include `status`: a venue can be set up before it opens."""
    response = await client.post("/v1/venues", headers=tenant.headers, json={
        "name": "Opening Soon", "timezone": "Europe/Berlin", "address": "Hauptstr. 1", "city": "Berlin",
        "state": "", "zip": "10115", "settings": {}, "operating_hours": {}, "status": "inactive"})
    assert response.status_code == 201, response.text
    venue = response.json()
    assert venue["status"] == "inactive" and venue["embed_key"]
    gone = await client.get(f"/v1/public/venues/{venue['embed_key']}")
    assert gone.status_code == 404 and gone.json()["code"] == "venue_not_found", gone.text
    opened = await client.patch(f"/v1/venues/{venue['id']}", headers=tenant.headers, json={"status": "active"})
    assert opened.status_code == 200, opened.text
    page = await client.get(f"/v1/public/venues/{venue['embed_key']}")
    assert page.status_code == 200 and page.json()["venue"]["name"] == "Opening Soon", page.text
    refused = await client.post("/v1/venues", headers=tenant.headers, json={
        "name": "Archived", "timezone": "Europe/Berlin", "status": "archived"})
    assert refused.status_code == 422 and "status" in refused.text, refused.text
