"""The staff dashboard's day, bookings, customers and live lists, driven as a browser would (cookies,
forms with their CSRF token) without one: what the pages show, what changes in the data, who may do
what, and the live event stream on a real server."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

from bookingtms.bookings.service import EXPORT_COLUMNS
from bookingtms.web import admin_bookings
from tests.auth.conftest import make_staff
from tests.factories import PASSWORD, book, future_session, make_activity, make_tenant
from tests.pages.helpers import PageClient
from tests.realtime.sse import EventStream


def booking_row(owner_engine, booking_id: str):
    with owner_engine.connect() as conn:
        return conn.execute(text("SELECT status, checked_in_at, refund_amount, payment_status, session_id, "
                                 "guest_count, source, notes FROM bookings WHERE id = :id"), {"id": booking_id}).one()


def remaining(owner_engine, session_id) -> int:
    with owner_engine.connect() as conn:
        return conn.execute(text("SELECT capacity_remaining FROM activity_sessions WHERE id = :id"),
                            {"id": str(session_id)}).scalar_one()


def mark_paid(owner_engine, booking_id: str) -> None:
    """The customer paid at the venue: the offline charge succeeded (what a settled payment looks like)."""
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE payments SET status = 'succeeded' WHERE booking_id = :id AND kind = 'charge'"),
                     {"id": booking_id})
        conn.execute(text("UPDATE bookings SET payment_status = 'paid' WHERE id = :id"), {"id": booking_id})


async def signed_in(app, email: str) -> PageClient:
    browser = PageClient(app)
    await browser.sign_in(email, PASSWORD)
    return browser


def local(moment: str, tz: str) -> datetime:
    return datetime.fromisoformat(moment).astimezone(ZoneInfo(tz))


# ------------------------------------------------------------------------------------------------
# Today
# ------------------------------------------------------------------------------------------------
async def test_today_lists_the_days_sessions_and_bookings_in_the_venues_zone(app, client, platform_admin):
    # Tokyo: an 08:00 session is 23:00 UTC the day before, so a UTC day would put it on the wrong page.
    tenant = await make_tenant(client, platform_admin, timezone_name="Asia/Tokyo")
    activity = await make_activity(client, tenant, capacity=8, schedule={
        "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "times": ["08:00", "19:30"]}]})
    session = await future_session(client, tenant, activity, days_ahead=3)
    start = local(session["start_time"], "Asia/Tokyo")
    if start.hour != 8:  # the window's first session may be the evening one
        session = await future_session(client, tenant, activity, days_ahead=4)
        start = local(session["start_time"], "Asia/Tokyo")
    assert start.hour == 8 and datetime.fromisoformat(session["start_time"]).astimezone(ZoneInfo("UTC")).day != start.day
    booking = await book(client, tenant, session["id"], spots=3, email="kenji.sato@example.com")

    async with await signed_in(app, tenant.owner_email) as browser:
        page = await browser.get(f"/admin?date={start.date().isoformat()}")
        assert page.status_code == 200, page.text
        html = page.text
        assert activity["name"] in html and "08:00–09:00" in html and "19:30–20:30" in html
        assert html.index("08:00–09:00") < html.index("19:30–20:30")  # start order
        assert booking["reference"] in html and "Bea Buyer" in html
        assert "3 / 8 booked" in html
        assert f'action="/admin/bookings/{booking["id"]}/check-in"' in html
        # The day before (the UTC date of the 08:00 session) does not show it.
        before = await browser.get(f"/admin?date={(start.date() - timedelta(days=1)).isoformat()}")
        assert booking["reference"] not in before.text
        # Without a date: today in Tokyo, with links to the days around it.
        today = await browser.get("/admin")
        tokyo_today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
        assert f"Today, {tokyo_today.strftime('%A %d %B %Y')}" in today.text
        assert "Previous day" in today.text and "Next day" in today.text


async def test_today_has_a_venue_selector_when_there_are_several_venues(app, client, tenant):
    annex = await client.post("/v1/venues", headers=tenant.headers, json={"name": "Lisbon Annex",
                                                                         "timezone": "Europe/Lisbon"})
    assert annex.status_code == 201, annex.text
    annex = annex.json()
    activity = await make_activity(client, tenant, venue_id=annex["id"], schedule={
        "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "times": ["11:15"]}]})
    session = (await client.get("/v1/sessions", headers=tenant.headers,
                                params={"activity_id": activity["id"], "limit": 1})).json()["items"][0]
    day = local(session["start_time"], "Europe/Lisbon").date().isoformat()
    async with await signed_in(app, tenant.owner_email) as browser:
        page = (await browser.get(f"/admin?date={day}")).text
        assert '<label for="f-venue">Venue</label>' in page and "Lisbon Annex" in page
        chosen = (await browser.get(f"/admin?venue={annex['id']}&date={day}")).text
        assert "11:15–12:15" in chosen and activity["name"] in chosen and "(Europe/Lisbon)" in chosen
        # The day links keep the venue chosen.
        assert f'href="/admin?venue={annex["id"]}&amp;date=' in chosen


async def test_staff_check_in_from_today_changes_the_booking(app, client, tenant, owner_engine):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], spots=2)
    staff = await make_staff(tenant, "staff")
    day = local(session["start_time"], "America/New_York").date().isoformat()
    async with await signed_in(app, staff.email) as browser:
        done = await browser.post(f"/admin/bookings/{booking['id']}/check-in", {"next": f"/admin?date={day}"})
        assert done.status_code == 303 and done.headers["location"] == f"/admin?date={day}"
        row = booking_row(owner_engine, booking["id"])
        assert row.checked_in_at is not None
        page = (await browser.get(done.headers["location"])).text
        shown = row.checked_in_at.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M")
        assert f"checked in at {shown}" in page  # the one-time message
        assert f"Checked in {shown}" in page  # the row
        assert f'action="/admin/bookings/{booking["id"]}/check-in"' not in page
        # A second click (a stale page) says so and changes nothing.
        again = await browser.post(f"/admin/bookings/{booking['id']}/check-in", {"next": f"/admin?date={day}"})
        assert again.status_code == 303
        assert "already checked in" in (await browser.get(again.headers["location"])).text
        assert booking_row(owner_engine, booking["id"]).checked_in_at == row.checked_in_at
        # `next` never leads off the dashboard.
        other = await book(client, tenant, session["id"], spots=1)
        away = await browser.post(f"/admin/bookings/{other['id']}/check-in", {"next": "https://evil.example.com/"})
        assert away.headers["location"] == f"/admin/bookings/{other['id']}"


async def test_forms_without_the_csrf_token_change_nothing(app, client, tenant, owner_engine):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"])
    async with await signed_in(app, tenant.owner_email) as browser:
        refused = await browser.http.post(f"/admin/bookings/{booking['id']}/check-in", data={"next": "/admin"})
        assert refused.status_code == 403 and "form expired" in refused.text
        forged = await browser.http.post(f"/admin/bookings/{booking['id']}/cancel",
                                         data={"refund": "full", "csrf_token": "0" * 64})
        assert forged.status_code == 403
    row = booking_row(owner_engine, booking["id"])
    assert row.checked_in_at is None and row.status == "confirmed"


# ------------------------------------------------------------------------------------------------
# Lookup, list, export
# ------------------------------------------------------------------------------------------------
async def test_lookup_by_reference_jumps_to_the_booking_and_email_or_name_finds_it(app, client, platform_admin, tenant,
                                                                                   monkeypatch):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], email="greta.lookup@example.com")
    await book(client, tenant, session["id"], email="someone.else@example.com")
    other = await make_tenant(client, platform_admin)
    theirs = await book(client, other, (await future_session(client, other, await make_activity(client, other)))["id"])
    async with await signed_in(app, tenant.owner_email) as browser:
        for typed in (booking["reference"], booking["reference"].lower(), booking["reference"].replace("-", "")):
            started = time.monotonic()
            jump = await browser.get("/admin/bookings", params={"q": typed})
            assert time.monotonic() - started < 1.0
            assert jump.status_code == 303 and jump.headers["location"] == f"/admin/bookings/{booking['id']}", typed
        detail = await browser.get(f"/admin/bookings/{booking['id']}")
        assert detail.status_code == 200 and booking["reference"] in detail.text
        assert "greta.lookup@example.com" in detail.text

        by_email = await browser.get("/admin/bookings", params={"q": "Greta.Lookup@example.com"})
        assert by_email.status_code == 200 and booking["reference"] in by_email.text
        assert "someone.else@example.com" not in by_email.text
        by_part = await browser.get("/admin/bookings", params={"q": "greta.look"})
        assert booking["reference"] in by_part.text and "someone.else" not in by_part.text
        by_name = await browser.get("/admin/bookings", params={"q": "bea buy"})
        assert booking["reference"] in by_name.text
        nobody = await browser.get("/admin/bookings", params={"q": "zebediah"})
        assert "No bookings match." in nobody.text
        # A part matching more customers than the lookup takes is searched among the bookings directly.
        monkeypatch.setattr(admin_bookings, "SEARCH_CUSTOMERS", 1)
        common = (await browser.get("/admin/bookings", params={"q": "@example.com"})).text
        assert booking["reference"] in common and "someone.else@example.com" in common
        assert "No bookings match." in (await browser.get("/admin/bookings", params={"q": "zebediah"})).text
        # Another organization's reference finds nothing here.
        none = await browser.get("/admin/bookings", params={"q": theirs["reference"]})
        assert none.status_code == 200 and "No bookings match." in none.text


async def test_another_tenants_booking_and_customer_are_404_pages(app, client, platform_admin, tenant):
    other = await make_tenant(client, platform_admin)
    theirs = await book(client, other, (await future_session(client, other, await make_activity(client, other)))["id"])
    async with await signed_in(app, tenant.owner_email) as browser:
        for url in (f"/admin/bookings/{theirs['id']}", f"/admin/bookings/{uuid.uuid4()}", "/admin/bookings/not-an-id"):
            page = await browser.get(url)
            assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), url
            assert "No such booking." in page.text
        refused = await browser.post(f"/admin/bookings/{theirs['id']}/check-in", {})
        assert refused.status_code == 404
        refused = await browser.post(f"/admin/bookings/{theirs['id']}/cancel", {"refund": "full"})
        assert refused.status_code == 404
    customers = (await client.get("/v1/customers", headers=other.headers)).json()["items"]
    async with await signed_in(app, tenant.owner_email) as browser:
        assert (await browser.get(f"/admin/customers/{customers[0]['id']}")).status_code == 404


async def test_filters_pages_and_csv_export_show_only_this_tenants_bookings(app, client, platform_admin, tenant,
                                                                          monkeypatch):
    activity = await make_activity(client, tenant)
    early = await future_session(client, tenant, activity, days_ahead=2)
    late = await future_session(client, tenant, activity, days_ahead=5)
    a = await book(client, tenant, early["id"], email="early.one@example.com")
    b = await book(client, tenant, late["id"], email="late.one@example.com")
    c = await book(client, tenant, late["id"], email="late.two@example.com")
    cancelled = await client.post(f"/v1/bookings/{c['id']}/cancel", headers=tenant.headers, json={"refund": "none"})
    assert cancelled.status_code == 200
    other = await make_tenant(client, platform_admin)
    theirs = await book(client, other, (await future_session(client, other, await make_activity(client, other)))["id"])
    late_day = local(late["start_time"], "America/New_York").date().isoformat()

    async with await signed_in(app, tenant.owner_email) as browser:
        everything = (await browser.get("/admin/bookings")).text
        assert all(x["reference"] in everything for x in (a, b, c)) and theirs["reference"] not in everything
        only_cancelled = (await browser.get("/admin/bookings", params={"status": "cancelled"})).text
        assert c["reference"] in only_cancelled and a["reference"] not in only_cancelled
        from_late = (await browser.get("/admin/bookings", params={"from": late_day, "to": late_day})).text
        assert b["reference"] in from_late and c["reference"] in from_late and a["reference"] not in from_late
        by_activity = (await browser.get("/admin/bookings", params={"activity": activity["id"]})).text
        assert all(x["reference"] in by_activity for x in (a, b, c))
        bad = await browser.get("/admin/bookings", params={"from": "yesterday", "status": "lost"})
        assert bad.status_code == 422 and "Enter a date as YYYY-MM-DD." in bad.text and "Choose a status" in bad.text

        # Cursor pages, two at a time: next, then previous, as the API's cursors go.
        monkeypatch.setattr(admin_bookings, "PAGE_SIZE", 2)
        first = (await browser.get("/admin/bookings")).text
        next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
        second = (await browser.get(next_url)).text
        assert 'rel="next"' not in second
        shown = {x["reference"] for x in (a, b, c) if x["reference"] in first}
        assert len(shown) == 2 and all(x["reference"] in second for x in (a, b, c) if x["reference"] not in shown)
        previous = re.search(r'href="([^"]+)" rel="prev"', second).group(1).replace("&amp;", "&")
        assert (await browser.get(previous)).text.count("<code>") == first.count("<code>")

        # The export: same filters, the page's cookie session, only this organization's rows.
        assert 'href="/admin/bookings/export.csv?status=confirmed"' in (
            await browser.get("/admin/bookings", params={"status": "confirmed"})).text
        export = await browser.get("/admin/bookings/export.csv", params={"status": "confirmed"})
        assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
        assert "attachment" in export.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(export.text)))
        assert tuple(rows[0]) == EXPORT_COLUMNS
        assert sorted(r[0] for r in rows[1:]) == sorted([a["reference"], b["reference"]])
        everything = list(csv.reader(io.StringIO((await browser.get("/admin/bookings/export.csv")).text)))
        assert {r[0] for r in everything[1:]} == {a["reference"], b["reference"], c["reference"]}
        for typed, expected in (("late.one@example.com", [b]), ("late.", [b, c]), ("nobody-at-all", [])):
            found = list(csv.reader(io.StringIO((await browser.get("/admin/bookings/export.csv",
                                                                   params={"q": typed})).text)))
            assert tuple(found[0]) == EXPORT_COLUMNS
            assert sorted(r[0] for r in found[1:]) == sorted(x["reference"] for x in expected), typed
    async with PageClient(app) as stranger:  # no session: sent to sign in, nothing exported
        response = await stranger.get("/admin/bookings/export.csv")
        assert response.status_code == 303 and response.headers["location"].startswith("/auth/login")


# ------------------------------------------------------------------------------------------------
# Cancel and refund
# ------------------------------------------------------------------------------------------------
def preview_amount(html: str, mode: str) -> str:
    found = re.search(rf'id="refund-{mode}-amount" data-refund="(\d+)">refunds ([^<]+)</span>', html)
    assert found, f"no {mode} refund preview"
    return found.group(1)


async def test_cancel_with_policy_full_or_none_refunds_what_the_preview_showed(app, client, tenant, owner_engine):
    # Three days ahead: past the 48-hour full refund window, inside the 50 % one.
    activity = await make_activity(client, tenant, capacity=10, price_amount=2500, cancellation_policy={
        "full_refund_hours": 100, "partial_refund_hours": 24, "partial_refund_percent": 50})
    session = await future_session(client, tenant, activity, days_ahead=3)
    bookings = {mode: await book(client, tenant, session["id"], spots=2, email=f"{mode}.payer@example.com")
                for mode in ("policy", "full", "none")}
    for booking in bookings.values():
        mark_paid(owner_engine, booking["id"])
    manager = await make_staff(tenant, "manager")
    expected = {"policy": 2500, "full": 5000, "none": 0}
    async with await signed_in(app, manager.email) as browser:
        for mode, booking in bookings.items():
            before = remaining(owner_engine, session["id"])
            page = (await browser.get(f"/admin/bookings/{booking['id']}")).text
            previews = {m: int(preview_amount(page, m)) for m in ("policy", "full", "none")}
            assert previews == expected
            assert "refunds 25.00 USD" in page and "refunds 50.00 USD" in page and "refunds 0.00 USD" in page
            done = await browser.post(f"/admin/bookings/{booking['id']}/cancel", {"refund": mode, "reason": "Rain"})
            assert done.status_code == 303 and done.headers["location"] == f"/admin/bookings/{booking['id']}"
            after = (await browser.get(done.headers["location"])).text
            amount = f"{expected[mode] // 100}.00 USD"
            assert f"cancelled; {amount} refunded" in after and "badge-cancelled" in after
            assert 'action="/admin/bookings/' + booking["id"] + '/cancel"' not in after
            row = booking_row(owner_engine, booking["id"])
            assert row.status == "cancelled" and row.refund_amount == previews[mode]
            assert remaining(owner_engine, session["id"]) == before + 2  # capacity returned
            with owner_engine.connect() as conn:
                refunds = conn.execute(text("SELECT coalesce(sum(amount), 0) FROM payments WHERE booking_id = :id "
                                            "AND kind = 'refund'"), {"id": booking["id"]}).scalar_one()
            assert refunds == previews[mode]
        # Cancelling again (a second tab) says it is done already.
        again = await browser.post(f"/admin/bookings/{bookings['full']['id']}/cancel", {"refund": "full"})
        assert "already cancelled" in (await browser.get(again.headers["location"])).text
        bad = await browser.post(f"/admin/bookings/{bookings['full']['id']}/cancel", {"refund": "double"})
        assert bad.status_code == 422 and "Choose a refund" in bad.text


async def test_an_unpaid_booking_previews_and_refunds_nothing(app, client, tenant, owner_engine):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity, days_ahead=3)
    booking = await book(client, tenant, session["id"], spots=1)
    async with await signed_in(app, tenant.owner_email) as browser:
        page = (await browser.get(f"/admin/bookings/{booking['id']}")).text
        assert {m: preview_amount(page, m) for m in ("policy", "full", "none")} == {"policy": "0", "full": "0", "none": "0"}
        await browser.post(f"/admin/bookings/{booking['id']}/cancel", {"refund": "full"})
    row = booking_row(owner_engine, booking["id"])
    assert row.status == "cancelled" and row.refund_amount == 0


async def test_a_staff_role_user_cannot_cancel_and_nothing_changes(app, client, tenant, owner_engine):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], spots=2)
    left = remaining(owner_engine, session["id"])
    staff = await make_staff(tenant, "staff")
    async with await signed_in(app, staff.email) as browser:
        page = await browser.get(f"/admin/bookings/{booking['id']}")
        assert page.status_code == 200 and "Cancel this booking" not in page.text and "Check in" in page.text
        refused = await browser.post(f"/admin/bookings/{booking['id']}/cancel", {"refund": "full"})
        assert refused.status_code == 403 and "bookings.cancel" in refused.text
        assert (await browser.get("/admin/bookings/new")).status_code == 403
    row = booking_row(owner_engine, booking["id"])
    assert row.status == "confirmed" and row.refund_amount == 0
    assert remaining(owner_engine, session["id"]) == left


# ------------------------------------------------------------------------------------------------
# A staff booking
# ------------------------------------------------------------------------------------------------
async def test_staff_booking_form_books_and_explains_its_errors(app, client, tenant, owner_engine):
    activity = await make_activity(client, tenant, capacity=4, min_players=2, max_players=4, price_amount=3000)
    session = await future_session(client, tenant, activity, days_ahead=2)
    day = local(session["start_time"], "America/New_York").date().isoformat()
    manager = await make_staff(tenant, "manager")
    good = {"date": day, "session_id": session["id"], "guest_count": "3", "email": "Walk.In@Example.com",
            "first_name": "Walter", "last_name": "In", "phone": "+1 555 0100", "notes": "Birthday"}

    def count() -> int:
        with owner_engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM bookings WHERE organization_id = :o"),
                                {"o": tenant.organization_id}).scalar_one()

    async with await signed_in(app, manager.email) as browser:
        form = await browser.get(f"/admin/bookings/new?date={day}")
        assert form.status_code == 200 and activity["name"] in form.text and "4 of 4 left" in form.text
        key = re.search(r'name="idempotency_key" value="([^"]+)"', form.text).group(1)

        blank = await browser.post("/admin/bookings/new", {"date": day, "idempotency_key": key})
        assert blank.status_code == 422
        assert "Choose a session from the list." in blank.text and "Enter a valid email address." in blank.text
        too_few = await browser.post("/admin/bookings/new", {**good, "guest_count": "1", "idempotency_key": key})
        assert too_few.status_code == 422 and "between 2 and 4" in too_few.text
        assert 'value="Walk.In@Example.com"' in too_few.text  # what was typed stays
        bad_phone = await browser.post("/admin/bookings/new", {**good, "phone": "call me", "idempotency_key": key})
        assert bad_phone.status_code == 422 and "Enter a phone number" in bad_phone.text
        assert count() == 0

        made = await browser.post("/admin/bookings/new", {**good, "idempotency_key": key})
        assert made.status_code == 303, made.text
        booking_id = made.headers["location"].rsplit("/", 1)[1]
        row = booking_row(owner_engine, booking_id)
        assert (row.status, row.guest_count, row.source, row.notes) == ("confirmed", 3, "staff", "Birthday")
        page = (await browser.get(made.headers["location"])).text
        assert "Booked " in page and "walk.in@example.com" in page and "90.00 USD" in page
        # The same form sent twice books once.
        twice = await browser.post("/admin/bookings/new", {**good, "idempotency_key": key})
        assert twice.status_code == 303 and twice.headers["location"] == made.headers["location"]
        assert count() == 1

        # One spot left: a party of two is told it is sold out, in the form.
        sold_out = await browser.post("/admin/bookings/new", {**good, "guest_count": "2", "idempotency_key": str(uuid.uuid4())})
        assert sold_out.status_code == 409 and "Sold out: only 1 spots are left." in sold_out.text
        assert 'aria-describedby="e-guest_count"' in sold_out.text
        assert count() == 1


# ------------------------------------------------------------------------------------------------
# Customers
# ------------------------------------------------------------------------------------------------
async def test_customers_list_history_and_edit(app, client, tenant, owner_engine):
    activity = await make_activity(client, tenant, price_amount=2000)
    first = await future_session(client, tenant, activity, days_ahead=2)
    second = await future_session(client, tenant, activity, days_ahead=4)
    older = await book(client, tenant, first["id"], spots=1, email="hana.history@example.com")
    newer = await book(client, tenant, second["id"], spots=2, email="hana.history@example.com")
    await book(client, tenant, first["id"], spots=1, email="other.person@example.com")
    staff = await make_staff(tenant, "staff")
    async with await signed_in(app, staff.email) as browser:
        listed = (await browser.get("/admin/customers", params={"q": "hana"})).text
        assert "hana.history@example.com" in listed and "other.person" not in listed
        assert "60.00 USD" in listed  # 3 guests x 20.00
        customer_id = re.search(r'href="/admin/customers/([0-9a-f-]{36})"', listed).group(1)
        page = (await browser.get(f"/admin/customers/{customer_id}")).text
        assert page.index(newer["reference"]) < page.index(older["reference"])  # newest first
        assert "Edit" not in page  # staff see, managers edit
        refused = await browser.post(f"/admin/customers/{customer_id}", {"first_name": "X", "last_name": "Y"})
        assert refused.status_code == 403
    manager = await make_staff(tenant, "manager")
    async with await signed_in(app, manager.email) as browser:
        bad = await browser.post(f"/admin/customers/{customer_id}", {"first_name": "", "last_name": "Hist"})
        assert bad.status_code == 422 and "Required." in bad.text
        saved = await browser.post(f"/admin/customers/{customer_id}",
                                   {"first_name": "Hana", "last_name": "History", "phone": "+81 3 1234 5678"})
        assert saved.status_code == 303
        assert "Customer saved." in (await browser.get(saved.headers["location"])).text
    with owner_engine.connect() as conn:
        row = conn.execute(text("SELECT first_name, last_name, phone FROM customers WHERE id = :id"),
                           {"id": customer_id}).one()
    assert tuple(row) == ("Hana", "History", "+81 3 1234 5678")


# ------------------------------------------------------------------------------------------------
# Live updates
# ------------------------------------------------------------------------------------------------
async def test_the_event_stream_respects_the_hubs_stream_limit(app, tenant, monkeypatch):
    from bookingtms.realtime import router as realtime

    monkeypatch.setattr(realtime._hub, "max_streams", 0)
    async with await signed_in(app, tenant.owner_email) as browser:
        refused = await browser.get("/admin/events")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "no free live-update stream" in refused.text


async def test_the_event_stream_tells_the_dashboard_of_bookings_and_check_ins(client, platform_admin, tenant,
                                                                           live_server):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    other = await make_tenant(client, platform_admin)
    other_session = await future_session(client, other, await make_activity(client, other))
    async with PageClient(base_url=live_server.url) as browser:
        assert (await browser.get("/admin/events")).status_code == 303  # signed out: to the sign-in page
        await browser.sign_in(tenant.owner_email, PASSWORD)
        async with browser.http.stream("GET", "/admin/events", timeout=httpx.Timeout(5, read=None)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = EventStream(response)
            try:
                assert (await stream.next(5)).comments == ["connected"]
                await book(client, other, other_session["id"])  # another organization: not told
                booking = await book(client, tenant, session["id"], spots=2)
                event = await stream.next_event(5)
                assert event.event == "availability"
                assert event.json()["session_id"] == session["id"]
                assert event.json()["venue_id"] == tenant.venue_id and event.json()["capacity_remaining"] == 8
                checked = await client.post(f"/v1/bookings/{booking['id']}/check-in", headers=tenant.headers)
                assert checked.status_code == 200
                event = await stream.next_event(5)
                assert event.event == "booking"
                assert event.json() == {"venue_id": tenant.venue_id, "booking_id": booking["id"],
                                        "change": "checked_in"}
                assert await stream.events_within(0.3) == []
            finally:
                await stream.close()


async def test_check_ins_reach_staff_streams_only_never_the_public_ones(client, tenant, settings):
    from bookingtms.realtime.hub import Hub

    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"])
    hub = Hub(settings)
    await hub.start()
    try:
        org, venue = uuid.UUID(tenant.organization_id), uuid.UUID(tenant.venue_id)
        public, staff = hub.subscribe(org, venue), hub.subscribe(org, None)
        assert hub.open_streams == 2  # a staff stream counts against the same limit
        checked = await client.post(f"/v1/bookings/{booking['id']}/check-in", headers=tenant.headers)
        assert checked.status_code == 200
        event = await asyncio.wait_for(staff.queue.get(), 5)
        assert b"event: booking" in event and booking["id"].encode() in event
        held = await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations", json={
            "session_id": session["id"], "spots": 1, "customer_email": "x@example.com"})
        assert held.status_code == 201
        event = await asyncio.wait_for(staff.queue.get(), 5)
        assert b"event: availability" in event and tenant.venue_id.encode() in event
        # The public stream heard the capacity change only: no booking ids, no check-ins.
        heard = await asyncio.wait_for(public.queue.get(), 5)
        assert b"event: availability" in heard and tenant.venue_id.encode() not in heard
        assert public.queue.empty()
        hub.unsubscribe(public)
        hub.unsubscribe(staff)
        assert hub.open_streams == 0
    finally:
        await hub.stop()


async def test_odd_links_get_a_clear_page_never_a_500(app, tenant):
    from bookingtms.http.pagination import encode_cursor

    tampered = encode_cursor(["not-a-time", "not-an-id"])
    async with await signed_in(app, tenant.owner_email) as browser:
        for url, status in (("/admin?date=2026-13-40", 422), ("/admin?venue=nope", 200),
                            ("/admin/bookings?cursor=%%%", 422), (f"/admin/bookings?cursor={tampered}", 422),
                            ("/admin/bookings?venue=nope&activity=also-nope", 422),
                            ("/admin/bookings?from=2026-05-02&to=2026-05-01", 422),
                            ("/admin/bookings/export.csv?from=soon", 422), ("/admin/customers?cursor=zz", 422),
                            (f"/admin/customers/{uuid.uuid4()}", 404), ("/admin/customers/x", 404),
                            ("/admin/bookings/new?date=someday&venue=nope", 200)):
            page = await browser.get(url)
            assert page.status_code == status, (url, page.status_code)
            assert page.headers["content-type"].startswith("text/html"), url
