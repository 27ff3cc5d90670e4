"""Staff dashboard, catalog side: the calendar, activities with the schedule editor and session
generation, a session's capacity and closing (optimistic locking), the statistics page; each
checked against what the API and the public availability say afterwards."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.auth.conftest import make_staff
from tests.factories import PASSWORD, bearer, book, every_day_at, future_session, make_activity, make_tenant, unique
from tests.pages.helpers import PageClient

NEW_YORK = ZoneInfo("America/New_York")


def local(start_time: str) -> datetime:
    return datetime.fromisoformat(start_time).astimezone(NEW_YORK)


async def signed_in(app, email: str) -> PageClient:
    browser = PageClient(app)
    await browser.sign_in(email, PASSWORD)
    return browser


def form_value(html: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)"[^>]*name="{re.escape(name)}"', html)
    assert found, f"no field {name}"
    return found.group(1)


def error_at(html: str, field: str) -> str:
    found = re.search(rf'<p class="error" id="e-{re.escape(field)}">([^<]*)</p>', html)
    assert found, f"no message at {field}"
    return found.group(1)


async def session_of(client, tenant, session_id: str) -> dict:
    response = await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def public_ids(client, tenant, activity, day: date) -> set[str]:
    response = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability", params={
        "activity_id": activity["id"], "from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()})
    assert response.status_code == 200, response.text
    return {s["id"] for s in response.json()["sessions"]}


# ----------------------------------------------------------------------------------------------
# Calendar
# ----------------------------------------------------------------------------------------------
async def test_calendar_day_and_week_show_sessions_at_local_times_with_occupancy(app, client, tenant):
    activity = await make_activity(client, tenant, capacity=8, schedule=every_day_at("10:00", "18:00"))
    session = await future_session(client, tenant, activity)
    await book(client, tenant, session["id"], spots=3)
    start = local(session["start_time"])
    assert start.strftime("%H:%M") == "10:00"
    utc_hour = datetime.fromisoformat(session["start_time"]).astimezone(ZoneInfo("UTC")).strftime("%H:%M")

    async with await signed_in(app, tenant.owner_email) as browser:
        day = await browser.get(f"/admin/calendar?view=day&date={start.date().isoformat()}")
        assert day.status_code == 200, day.text
        html = day.text
        assert activity["name"] in html
        rows = re.findall(r'<th scope="row" class="cal-time">([^<]+)</th>', html)
        assert rows == ["10:00", "18:00"]  # local times, not UTC
        assert utc_hour not in rows
        chip = html[html.index(f'href="/admin/sessions/{session["id"]}"'):]
        chip = chip[:chip.index("</a>")]
        assert "3/8" in chip and 'value="3"' in chip and "<meter" in chip and "10:00–11:00" in chip
        assert 'style="' not in html and "<script>" not in html  # the CSP allows neither
        # The grid refreshes itself when this venue's bookings change (admin-live.js, /admin/events).
        assert f'data-live-venue="{tenant.venue_id}"' in html and "js/admin-live.js" in html

        week = await browser.get(f"/admin/calendar?view=week&date={start.date().isoformat()}")
        assert week.status_code == 200
        headers = re.findall(r'<th scope="col"[^>]*>\s*<a [^>]*>([^<]+)</a>', week.text)
        monday = start.date() - timedelta(days=start.weekday())
        assert headers == [(monday + timedelta(days=n)).strftime("%a %d %b") for n in range(7)]
        assert f'/admin/sessions/{session["id"]}' in week.text
        assert re.findall(r'<th scope="row" class="cal-time">([^<]+)</th>', week.text) == ["10:00", "18:00"]
        # Every day of the week has its two sessions (one query for the view, all of them in it).
        assert week.text.count('class="cal-session') == 14
        # Previous/next links move by a week; the day view by a day.
        assert f"date={(start.date() - timedelta(days=7)).isoformat()}" in week.text
        assert f"date={(start.date() + timedelta(days=1)).isoformat()}" in html

        for bad_day in ("not-a-day", "0001-01-01"):
            bad = await browser.get(f"/admin/calendar?date={bad_day}")
            assert bad.status_code == 422 and "YYYY-MM-DD" in bad.text


# ----------------------------------------------------------------------------------------------
# Activities
# ----------------------------------------------------------------------------------------------
def activity_form(tenant, form_key: str, **overrides) -> dict:
    form = {
        "form_key": form_key, "name": unique("Escape"), "description": "Find the key.", "category": "escape room",
        "venue_id": tenant.venue_id, "duration_minutes": "90", "capacity": "6", "min_players": "2",
        "max_players": "6", "price": "25.00", "child_price": "15.50", "currency": "USD", "is_active": "on",
        "rule-0-days": ["mon", "wed"], "rule-0-times": ["10:00", "14:30", ""],
        "rule-1-days": ["sat"], "rule-1-times": ["09:00", "", ""],
        "rule-2-times": ["", "", ""],  # an empty block, as the page offers it
        "start_date": "", "end_date": "", "closed_dates": "",
    }
    form.update(overrides)
    return form


async def test_an_activity_is_created_with_a_schedule_and_its_sessions_generated(app, client, tenant):
    async with await signed_in(app, tenant.owner_email) as browser:
        page = await browser.get("/admin/activities/new")
        assert page.status_code == 200
        assert 'name="rule-0-days"' in page.text and 'name="rule-1-times"' in page.text  # blank rules without JS
        form = activity_form(tenant, form_value(page.text, "form_key"))
        created = await browser.post("/admin/activities/new", form)
        assert created.status_code == 303, created.text
        activity_id = created.headers["location"].rsplit("/", 1)[1]
        # The same form sent twice (a double click) creates one activity.
        again = await browser.post("/admin/activities/new", form)
        assert again.status_code == 303 and again.headers["location"] == created.headers["location"]
        # Sent once more after a change (back button): it says so, and creates nothing.
        changed_form = await browser.post("/admin/activities/new", {**form, "capacity": "7"})
        assert changed_form.status_code == 422 and "already sent once" in changed_form.text
        assert form_value(changed_form.text, "form_key") != form["form_key"]

        stored = (await client.get(f"/v1/activities/{activity_id}", headers=tenant.headers)).json()
        assert stored["name"] == form["name"] and stored["price_amount"] == 2500
        assert stored["child_price_amount"] == 1550 and stored["min_players"] == 2 and stored["duration_minutes"] == 90
        assert stored["schedule"]["weekly"] == [{"days": ["mon", "wed"], "times": ["10:00", "14:30"]},
                                                {"days": ["sat"], "times": ["09:00"]}]
        listed = (await client.get("/v1/activities", headers=tenant.headers)).json()["items"]
        assert [a["id"] for a in listed].count(activity_id) == 1 and len(listed) == 1

        shown = await browser.get(f"/admin/activities/{activity_id}")
        assert shown.status_code == 200 and "25.00" in shown.text and "15.50" in shown.text
        assert form["name"] in (await browser.get("/admin/activities")).text

        # Beyond the automatic horizon (60 days): two weeks of Mon+Wed at two times and Sat at one.
        first = date.today() + timedelta(days=120)
        last = first + timedelta(days=13)
        expected = sum(2 if (first + timedelta(days=n)).weekday() in (0, 2) else
                       1 if (first + timedelta(days=n)).weekday() == 5 else 0 for n in range(14))
        assert expected == 10
        generated = await browser.post(f"/admin/activities/{activity_id}/generate",
                                       {"from": first.isoformat(), "to": last.isoformat()})
        assert generated.status_code == 303
        result = await browser.get(generated.headers["location"])
        assert f"{expected} created, 0 already existed." in result.text
        repeated = await browser.post(f"/admin/activities/{activity_id}/generate",
                                      {"from": first.isoformat(), "to": last.isoformat()})
        assert f"0 created, {expected} already existed." in (await browser.get(repeated.headers["location"])).text
        sessions = (await client.get("/v1/sessions", headers=tenant.headers, params={
            "activity_id": activity_id, "from": first.isoformat(), "to": last.isoformat(), "limit": 100})).json()
        starts = sorted(local(s["start_time"]).strftime("%a %H:%M") for s in sessions["items"])
        assert starts == sorted(["Mon 10:00", "Mon 14:30", "Wed 10:00", "Wed 14:30", "Sat 09:00"] * 2)

        bad_window = await browser.post(f"/admin/activities/{activity_id}/generate",
                                        {"from": last.isoformat(), "to": first.isoformat()})
        assert bad_window.status_code == 422 and error_at(bad_window.text, "to")


async def test_invalid_activity_input_shows_messages_at_the_fields_and_writes_nothing(app, client, tenant):
    async with await signed_in(app, tenant.owner_email) as browser:
        page = await browser.get("/admin/activities/new")
        form = activity_form(tenant, form_value(page.text, "form_key"), min_players="5", max_players="3",
                             price="-5", **{"rule-1-times": ["09:00", "25:00", ""]})
        refused = await browser.post("/admin/activities/new", form)
        assert refused.status_code == 422
        html = refused.text
        assert "at least the minimum" in error_at(html, "max_players")
        assert "25:00" in error_at(html, "rule-1-times")
        assert "negative" in error_at(html, "price")
        assert re.search(r'aria-describedby="[^"]*e-max_players"', html) and 'aria-invalid="true"' in html
        assert f'value="{form["name"]}"' in html  # what was typed stays
        # Nothing was written.
        assert (await client.get("/v1/activities", headers=tenant.headers)).json()["items"] == []

        # Each on its own, too: the schema's own checks name their field.
        alone = await browser.post("/admin/activities/new", activity_form(
            tenant, form_value(page.text, "form_key"), capacity="0", currency="dollars",
            end_date="2020-01-01", start_date="2021-01-01", closed_dates="2026-13-45"))
        assert alone.status_code == 422
        assert error_at(alone.text, "capacity") == "Must be at least 1."
        assert "three-letter" in error_at(alone.text, "currency")
        assert "before" in error_at(alone.text, "end_date")
        assert "2026-13-45" in error_at(alone.text, "closed_dates")
        days_only = await browser.post("/admin/activities/new", activity_form(
            tenant, form_value(page.text, "form_key"), **{"rule-1-times": ["", "", ""]}))
        assert days_only.status_code == 422 and error_at(days_only.text, "rule-1-times") == "Add at least one time."
        assert (await client.get("/v1/activities", headers=tenant.headers)).json()["items"] == []


async def test_an_activity_is_edited_and_archived_with_confirmation(app, client, tenant):
    activity = await make_activity(client, tenant, schedule=every_day_at("10:00"))
    async with await signed_in(app, tenant.owner_email) as browser:
        page = await browser.get(f"/admin/activities/{activity['id']}")
        assert page.status_code == 200 and 'name="rule-0-times"' in page.text and 'value="10:00"' in page.text
        form = activity_form(tenant, "", name="Renamed room", price="30.50", child_price="",
                             **{"rule-0-days": ["tue"], "rule-0-times": ["11:15", ""], "rule-1-days": [],
                                "rule-1-times": []})
        saved = await browser.post(f"/admin/activities/{activity['id']}", form)
        assert saved.status_code == 303, saved.text
        stored = (await client.get(f"/v1/activities/{activity['id']}", headers=tenant.headers)).json()
        assert stored["name"] == "Renamed room" and stored["price_amount"] == 3050
        assert stored["schedule"]["weekly"] == [{"days": ["tue"], "times": ["11:15"]}]

        unconfirmed = await browser.post(f"/admin/activities/{activity['id']}/archive", {})
        assert unconfirmed.status_code == 422 and error_at(unconfirmed.text, "confirm")
        assert (await client.get(f"/v1/activities/{activity['id']}", headers=tenant.headers)).status_code == 200
        archived = await browser.post(f"/admin/activities/{activity['id']}/archive", {"confirm": "on"})
        assert archived.status_code == 303 and archived.headers["location"] == "/admin/activities"
        assert (await client.get(f"/v1/activities/{activity['id']}", headers=tenant.headers)).status_code == 404
        listing = (await browser.get("/admin/activities")).text
        assert "“Renamed room” archived." in listing and "Renamed room</a>" not in listing


# ----------------------------------------------------------------------------------------------
# A session: capacity, closing, optimistic locking
# ----------------------------------------------------------------------------------------------
async def test_a_stale_version_is_refused_with_the_current_values(app, client, tenant):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    await book(client, tenant, session["id"], spots=2)
    async with await signed_in(app, tenant.owner_email) as browser:
        page = await browser.get(f"/admin/sessions/{session['id']}")
        assert page.status_code == 200
        assert activity["name"] in page.text and 'id="fact-booked">2<' in page.text
        version = form_value(page.text, "version")
        # Someone else saves first, through the API.
        other = await client.patch(f"/v1/sessions/{session['id']}", headers={**tenant.headers, "If-Match": f'"{version}"'},
                                   json={"capacity_total": 12})
        assert other.status_code == 200, other.text

        mine = await browser.post(f"/admin/sessions/{session['id']}", {"version": version, "capacity_total": "9"})
        assert mine.status_code == 412
        assert "Someone else changed this session while you were editing" in mine.text
        assert "capacity 12" in mine.text and "review and save again" in mine.text
        assert form_value(mine.text, "capacity_total") == "12"  # the current values, to review
        assert form_value(mine.text, "version") == str(other.json()["version"])
        assert (await session_of(client, tenant, session["id"]))["capacity_total"] == 12  # as the other saved it

        # Saved again from the refreshed form: it goes through.
        retry = await browser.post(f"/admin/sessions/{session['id']}",
                                   {"version": form_value(mine.text, "version"), "capacity_total": "9"})
        assert retry.status_code == 303
        assert (await session_of(client, tenant, session["id"]))["capacity_total"] == 9


async def test_capacity_below_what_is_booked_is_refused_at_the_field(app, client, tenant):
    activity = await make_activity(client, tenant, capacity=10)
    session = await future_session(client, tenant, activity)
    await book(client, tenant, session["id"], spots=4)
    async with await signed_in(app, tenant.owner_email) as browser:
        page = await browser.get(f"/admin/sessions/{session['id']}")
        refused = await browser.post(f"/admin/sessions/{session['id']}",
                                     {"version": form_value(page.text, "version"), "capacity_total": "3"})
        assert refused.status_code == 409
        assert "4 spots are already booked or held" in error_at(refused.text, "capacity_total")
        assert form_value(refused.text, "capacity_total") == "3"  # what was typed, to correct
        after = await session_of(client, tenant, session["id"])
        assert after["capacity_total"] == 10 and after["capacity_remaining"] == 6
        not_a_number = await browser.post(f"/admin/sessions/{session['id']}",
                                          {"version": form_value(page.text, "version"), "capacity_total": "ten"})
        assert not_a_number.status_code == 422 and error_at(not_a_number.text, "capacity_total")


async def test_closing_a_session_takes_it_off_public_availability(app, client, tenant):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    day = local(session["start_time"]).date()
    assert session["id"] in await public_ids(client, tenant, activity, day)
    async with await signed_in(app, tenant.owner_email) as browser:
        page = await browser.get(f"/admin/sessions/{session['id']}")
        closed = await browser.post(f"/admin/sessions/{session['id']}",
                                    {"version": form_value(page.text, "version"), "action": "close"})
        assert closed.status_code == 303
        assert session["id"] not in await public_ids(client, tenant, activity, day)
        assert (await session_of(client, tenant, session["id"]))["is_closed"] is True
        shown = await browser.get(closed.headers["location"])
        assert "Session closed." in shown.text and "Reopen this session" in shown.text
        calendar = await browser.get(f"/admin/calendar?view=day&date={day.isoformat()}")
        chip = calendar.text[calendar.text.index(f'/admin/sessions/{session["id"]}') - 60:]
        assert "is-closed" in chip[:200] and "badge-closed" in chip[:chip.index("</a>")]

        reopened = await browser.post(f"/admin/sessions/{session['id']}",
                                      {"version": form_value(shown.text, "version"), "action": "reopen"})
        assert reopened.status_code == 303
        assert session["id"] in await public_ids(client, tenant, activity, day)


# ----------------------------------------------------------------------------------------------
# Who may do what
# ----------------------------------------------------------------------------------------------
async def test_staff_see_the_calendar_but_may_not_edit(app, client, tenant):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    staff = await make_staff(tenant, "staff")
    async with await signed_in(app, staff.email) as browser:
        assert (await browser.get("/admin/calendar")).status_code == 200
        listed = await browser.get("/admin/activities")
        assert listed.status_code == 200 and activity["name"] in listed.text and "New activity" not in listed.text
        assert (await browser.get(f"/admin/activities/{activity['id']}")).status_code == 403
        assert (await browser.get("/admin/activities/new")).status_code == 403
        assert (await browser.post(f"/admin/activities/{activity['id']}", activity_form(tenant, ""))).status_code == 403
        view = await browser.get(f"/admin/sessions/{session['id']}")
        assert view.status_code == 200 and 'name="capacity_total"' not in view.text
        version = str((await session_of(client, tenant, session["id"]))["version"])
        refused = await browser.post(f"/admin/sessions/{session['id']}", {"version": version, "action": "close"})
        assert refused.status_code == 403
        assert (await browser.get("/admin/stats")).status_code == 403  # stats.view is for managers up
    assert (await session_of(client, tenant, session["id"]))["is_closed"] is False


async def test_another_tenants_activity_and_session_are_not_found(app, client, platform_admin, tenant):
    other = await make_tenant(client, platform_admin)
    theirs = await make_activity(client, other)
    their_session = await future_session(client, other, theirs)
    async with await signed_in(app, tenant.owner_email) as browser:
        assert (await browser.get(f"/admin/activities/{theirs['id']}")).status_code == 404
        assert (await browser.post(f"/admin/activities/{theirs['id']}/generate",
                                   {"from": "2030-01-01", "to": "2030-01-02"})).status_code == 404
        assert (await browser.post(f"/admin/activities/{theirs['id']}/archive", {"confirm": "on"})).status_code == 404
        assert (await browser.get(f"/admin/sessions/{their_session['id']}")).status_code == 404
        version = str((await session_of(client, other, their_session["id"]))["version"])
        assert (await browser.post(f"/admin/sessions/{their_session['id']}",
                                   {"version": version, "action": "close"})).status_code == 404
        assert (await browser.get(f"/admin/calendar?venue_id={other.venue_id}")).status_code == 404
        assert (await browser.get("/admin/sessions/not-a-uuid")).status_code == 404
        # Nor can an activity be put in their venue.
        page = await browser.get("/admin/activities/new")
        refused = await browser.post("/admin/activities/new", activity_form(
            tenant, form_value(page.text, "form_key"), venue_id=other.venue_id))
        assert refused.status_code == 422 and "no venue of this organization" in error_at(refused.text, "venue_id")
        assert (await client.get("/v1/activities", headers=other.headers)).json()["items"] == [theirs]
        assert (await client.get("/v1/activities", headers=tenant.headers)).json()["items"] == []
    assert (await session_of(client, other, their_session["id"]))["is_closed"] is False
    assert (await client.get(f"/v1/activities/{theirs['id']}", headers=other.headers)).status_code == 200


async def test_forms_without_the_csrf_token_are_refused(app, client, tenant):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    async with await signed_in(app, tenant.owner_email) as browser:
        version = str((await session_of(client, tenant, session["id"]))["version"])
        refused = await browser.http.post(f"/admin/sessions/{session['id']}", data={"version": version,
                                                                                    "action": "close"})
        assert refused.status_code == 403
    assert (await session_of(client, tenant, session["id"]))["is_closed"] is False


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("venue_filter", [False, True])
async def test_stats_totals_match_the_api(app, client, tenant, venue_filter):
    activity = await make_activity(client, tenant, capacity=10, price_amount=2500)
    session = await future_session(client, tenant, activity, days_ahead=2)
    await book(client, tenant, session["id"], spots=3, email="a@example.com")
    await book(client, tenant, session["id"], spots=2, email="b@example.com")
    day = local(session["start_time"]).date()
    params = {"from": (day - timedelta(days=6)).isoformat(), "to": (day + timedelta(days=1)).isoformat()}
    if venue_filter:
        params["venue_id"] = tenant.venue_id
    api = (await client.get("/v1/dashboard/stats", headers=tenant.headers, params=params)).json()
    assert api["totals"]["bookings"] == 2 and api["totals"]["guests"] == 5

    async with await signed_in(app, tenant.owner_email) as browser:
        page = await browser.get("/admin/stats", params=params)
        assert page.status_code == 200, page.text
        html = page.text

        def kpi(name: str) -> str:
            return re.search(rf'id="total-{name}">([^<]*)<', html).group(1)

        assert kpi("bookings") == str(api["totals"]["bookings"])
        assert kpi("guests") == str(api["totals"]["guests"])
        assert kpi("revenue") == "125.00 USD" and api["totals"]["revenue_amount"] == 12500
        assert kpi("occupancy") == f"{api['totals']['occupancy'] * 100:.0f}%"
        assert html.count('role="img"') == 3 and html.count("<details>") == 3
        # One bar per day of the window in each bar chart.
        assert html.count('class="bar"') == 2 * len(api["days"])
        assert f"{day:%a %d %b %Y}" in html and "125.00 USD" in html

        bad = await browser.get("/admin/stats", params={"from": "2026-02-30"})
        assert bad.status_code == 422 and error_at(bad.text, "from")


async def test_malformed_input_gets_a_message_never_a_500(app, client, tenant):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    async with await signed_in(app, tenant.owner_email) as browser:
        for url, status in [("/admin/calendar?view=xyz", 200), ("/admin/calendar?venue_id=zzz", 404),
                            ("/admin/calendar?date=2026-02-30", 422), ("/admin/stats?from=abc", 422),
                            ("/admin/stats?from=2000-01-01&to=2100-01-01", 422), ("/admin/stats?venue_id=abc", 404),
                            ("/admin/activities?venue_id=abc", 404), ("/admin/activities/xyz", 404)]:
            assert (await browser.get(url)).status_code == status, url
        odd = await browser.post("/admin/activities/new", {
            "rule-0-days": ["funday"], "rule-0-times": ["10:00:30"], "rule-999-times": ["x"], "price": "1e5",
            "name": "x" * 300, "duration_minutes": "99999999999999999999", "capacity": "-3"})
        assert odd.status_code == 422
        assert "funday" in error_at(odd.text, "rule-0-days") and "10:00:30" in error_at(odd.text, "rule-0-times")
        # The rule sent as number 999 is shown (and told about) as the second rule.
        assert error_at(odd.text, "rule-1-days") == "Tick at least one day." and "'x'" in error_at(
            odd.text.replace("&#39;", "'"), "rule-1-times")
        assert error_at(odd.text, "name") == "At most 200 characters."
        assert error_at(odd.text, "duration_minutes") == "Must be at most 1440."
        assert "amount like 25" in error_at(odd.text, "price")
        empty = await browser.post(f"/admin/activities/{activity['id']}/generate", {"from": "abc", "to": ""})
        assert empty.status_code == 422 and error_at(empty.text, "to") == "Required."
        too_long = await browser.post(f"/admin/activities/{activity['id']}/generate",
                                      {"from": "2030-01-01", "to": "2032-01-01"})
        assert error_at(too_long.text, "to") == "At most 366 days at a time."
        for data in ({"version": "abc", "capacity_total": "1"}, {"version": "1", "capacity_total": "-1"},
                     {"version": "99999999999999999999", "capacity_total": "5"}):
            assert (await browser.post(f"/admin/sessions/{session['id']}", data)).status_code == 422, data
    assert (await client.get("/v1/activities", headers=tenant.headers)).json()["items"] == [activity]
    assert (await session_of(client, tenant, session["id"]))["capacity_total"] == 10
