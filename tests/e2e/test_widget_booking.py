"""A customer books through the widget pasted into a business's own site (another origin), in
Chromium: activity, day, time and party size (by keyboard), the hold's countdown, a validation error
fixed, offline payment, the confirmation; the booking is then in the database and its page opens
from the confirmation. A second run at 375 px wide; a third releases a hold with "Change time",
lets one run out (410) and meets a suspended business (403)."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect
from sqlalchemy import text

from tests.e2e.conftest import screenshot
from tests.factories import future_session, make_activity

pytestmark = pytest.mark.xdist_group("browser")

ZONE = ZoneInfo("America/New_York")
DEFAULT_IFRAME_HEIGHT = 480  # static/js/widget.js, until the widget reports its height


def host_html(server_url: str, embed_key: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lighthouse Escapes</title></head>
<body>
<h1>Lighthouse Escapes</h1>
<p>Book your room below.</p>
<script src="{server_url}/widget.js" data-embed-key="{embed_key}" async></script>
<footer><p>Lighthouse Escapes, 1 Harbour Road</p></footer>
</body></html>"""


def day_label(start: datetime) -> str:
    return f"{start:%A} {start.day} {start:%B} {start.year}"


async def find_day(widget, start: datetime):
    """Moves the calendar to the month of `start`; that day's button, enabled."""
    status = widget.locator("#w-days-status")
    for _ in range(4):
        await expect(status).not_to_have_text(re.compile("Loading"))
        if (await widget.locator("#w-month-label").text_content()) == f"{start:%B %Y}":
            break
        await widget.get_by_role("button", name="Next month").click()
    day = widget.get_by_role("button", name=re.compile("^" + re.escape(day_label(start)) + r", \d+ times? available$"))
    await expect(day).to_be_enabled()
    return day


async def test_customer_books_through_the_widget_embedded_on_another_site(client, tenant, live_server, host_site,
                                                                        new_page):
    activity = await make_activity(client, tenant, capacity=6, min_players=1, max_players=4, price_amount=2500,
                                   description="Solve the keeper's riddles before the light goes out.")
    session = await future_session(client, tenant, activity, days_ahead=3)
    start = datetime.fromisoformat(session["start_time"]).astimezone(ZONE)

    page = await new_page()
    await page.goto(host_site(host_html(live_server.url, tenant.embed_key)))
    iframe = page.locator("iframe.bookingtms-widget")
    # The loader built the iframe from its own origin and key, right after the script tag.
    await expect(iframe).to_have_attribute("src", f"{live_server.url}/widget/{tenant.embed_key}")
    await expect(iframe).to_have_attribute("title", "Book online")
    assert await page.evaluate("document.querySelector('script[data-embed-key]').nextElementSibling.tagName") == "IFRAME"
    widget = page.frame_locator("iframe.bookingtms-widget")

    await expect(widget.get_by_text("Solve the keeper's riddles before the light goes out.")).to_be_visible()
    await widget.get_by_role("button", name="Choose dates").click()
    await expect(widget.locator("#h-date")).to_be_focused()  # focus moves to the new step's heading
    day = await find_day(widget, start)
    await expect(widget.locator("#w-days button:disabled").first).to_be_attached()  # days without space
    await screenshot(page, "widget-calendar")
    await day.click()

    # Keyboard only from here to the hold: Tab to the time, Enter; Tab to the party size, arrow
    # key; Tab to the email, type; Tab to the button, Space.
    await expect(widget.locator("#h-time")).to_be_focused()
    await expect(widget.locator("#step-time .w-sub")).to_contain_text(day_label(start))
    time_name = f"{start:%H:%M}, 6 spots left"
    await page.keyboard.press("Tab")
    await expect(widget.get_by_role("button", name=time_name)).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(widget.get_by_role("button", name=time_name)).to_have_attribute("aria-pressed", "true")
    times = [await b.get_attribute("aria-label") for b in await widget.locator(".w-time").all()]
    for _ in range(len(times) - times.index(time_name)):  # past the later times, to the party size
        await page.keyboard.press("Tab")
    await expect(widget.get_by_label("Party size")).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(widget.get_by_label("Party size")).to_have_value("2")
    await expect(widget.locator("#w-total")).to_contain_text("Total: 50.00 USD")
    await page.keyboard.press("Tab")
    await expect(widget.get_by_label("Email")).to_be_focused()
    await page.keyboard.type("nora.north@example.com")
    await page.keyboard.press("Tab")
    await expect(widget.get_by_role("button", name="Hold these spots")).to_be_focused()
    await page.keyboard.press("Space")

    # Held: a countdown, and the form.
    await expect(widget.locator("#h-details")).to_be_focused()
    await expect(widget.locator("#w-countdown")).to_have_text(re.compile(r"^[0-5]:\d\d$"))
    await expect(widget.locator("#step-details").get_by_label("Email")).to_have_value("nora.north@example.com")
    await widget.get_by_label("First name").fill("Nora")
    await widget.get_by_label("Last name").fill("North")
    await widget.get_by_label("Phone (optional)").fill("call me maybe")
    await widget.get_by_role("button", name="Confirm booking").click()
    phone_error = widget.locator("#e-phone")
    await expect(phone_error).to_have_text("Enter a phone number with digits, spaces and + ( ) - only.")
    await expect(widget.get_by_label("Phone (optional)")).to_be_focused()
    await expect(widget.get_by_label("Phone (optional)")).to_have_attribute("aria-invalid", "true")
    # The iframe grew with its content.
    assert (await iframe.evaluate("e => e.getBoundingClientRect().height")) > DEFAULT_IFRAME_HEIGHT
    await screenshot(page, "widget-details")
    await widget.get_by_label("Phone (optional)").fill("+1 212 555 0100")
    # A promo code the business never issued: the API's answer is shown at the promo field.
    await widget.get_by_label("Promo code (optional)").fill("NOT-A-CODE")
    await widget.get_by_role("button", name="Confirm booking").click()
    await expect(widget.locator("#e-promo_code")).to_have_text("This promo code is not valid for this booking.")
    await expect(widget.get_by_label("Promo code (optional)")).to_be_focused()
    await expect(phone_error).to_be_hidden()
    await widget.get_by_label("Promo code (optional)").fill("")
    await widget.get_by_role("button", name="Confirm booking").click()

    await expect(widget.locator("#h-done")).to_have_text("Booking confirmed")
    await expect(widget.locator("#h-done")).to_be_focused()
    reference = (await widget.locator("#w-reference").text_content()).strip()
    assert re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", reference)
    await expect(widget.locator("#step-done")).to_contain_text(f"{start:%H:%M}")
    await expect(widget.locator("#step-done")).to_contain_text("50.00 USD")
    await expect(widget.get_by_role("link", name="Add to calendar (.ics)")).to_have_attribute(
        "href", re.compile(r"^/my-booking/[^/]+/booking\.ics$"))
    await screenshot(page, "widget-confirmation")

    stored = await client.get(f"/v1/bookings/by-reference/{reference}", headers=tenant.headers)
    assert stored.status_code == 200, stored.text
    booking = stored.json()
    assert booking["status"] == "confirmed" and booking["guest_count"] == 2 and booking["total_amount"] == 5000
    assert booking["customer_email"] == "nora.north@example.com" and booking["session_id"] == session["id"]
    assert booking["customer_phone"] == "+1 212 555 0100"

    # The manage link opens the customer's booking page.
    async with page.context.expect_page() as opened:
        await widget.get_by_role("link", name="View or cancel your booking").click()
    portal = await opened.value
    await expect(portal.get_by_role("heading", name=re.compile("Your booking"))).to_contain_text(reference)
    await expect(portal.locator("#refund-now")).to_contain_text("Nothing has been paid yet")
    await screenshot(portal, "portal-booking")


async def test_widget_fits_a_375_px_phone(client, tenant, live_server, host_site, new_page):
    activity = await make_activity(client, tenant, capacity=4, min_players=2, max_players=4, price_amount=4000)
    session = await future_session(client, tenant, activity, days_ahead=2)
    start = datetime.fromisoformat(session["start_time"]).astimezone(ZONE)
    page = await new_page(width=375, height=740)
    # This site puts the tag in <head> and names where the widget goes (data-target).
    await page.goto(host_site(f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Harbour Tours</title>
<script src="{live_server.url}/widget.js" data-embed-key="{tenant.embed_key}" data-target="booking"
        data-title="Book a harbour tour" async></script></head>
<body><h1>Harbour Tours</h1><div id="booking"></div><p>Questions? Call us.</p></body></html>"""))
    await expect(page.locator("#booking > iframe")).to_have_attribute("title", "Book a harbour tour")
    widget = page.frame_locator("iframe.bookingtms-widget")
    await widget.get_by_role("button", name="Choose dates").click()
    await (await find_day(widget, start)).click()
    await widget.get_by_role("button", name=f"{start:%H:%M}, 4 spots left").click()
    await expect(widget.get_by_label("Party size")).to_have_value("2")  # the activity's minimum
    assert [await o.text_content() for o in await widget.locator("#w-spots option").all()] == [
        "2 people", "3 people", "4 people"]
    frame = page.frames[1]
    assert await frame.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than the phone
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await screenshot(page, "widget-mobile")


async def test_change_time_expired_hold_and_suspended_business(client, tenant, platform_admin, live_server,
                                                                         new_page, owner_engine):
    activity = await make_activity(client, tenant, capacity=5, price_amount=1000)
    session = await future_session(client, tenant, activity, days_ahead=2)
    start = datetime.fromisoformat(session["start_time"]).astimezone(ZONE)
    page = await new_page(width=700)
    await page.goto(f"{live_server.url}/widget/{tenant.embed_key}")  # the widget page on its own works too
    await page.get_by_role("button", name="Choose dates").click()
    await (await find_day(page, start)).click()
    await page.get_by_role("button", name=f"{start:%H:%M}, 5 spots left").click()
    await page.get_by_label("Email", exact=True).fill("late@example.com")
    await page.get_by_role("button", name="Hold these spots").click()
    await expect(page.locator("#h-details")).to_be_focused()

    # "Change time" gives the spots back at once and returns to the times.
    await page.get_by_role("button", name="Change time").click()
    await expect(page.locator("#h-time")).to_be_focused()
    await expect(page.get_by_role("alert")).to_have_text("Your spots were released. Choose another time.")
    await expect(page.get_by_role("button", name=f"{start:%H:%M}, 5 spots left")).to_be_enabled()
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM slot_reservations WHERE session_id = :s"),
                            {"s": session["id"]}).scalars().all() == ["released"]
    await page.get_by_role("button", name=f"{start:%H:%M}, 5 spots left").click()
    await page.get_by_role("button", name="Hold these spots").click()
    await expect(page.locator("#h-details")).to_be_focused()

    # The hold runs out before the customer sends the form (410 reservation_expired).
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE slot_reservations SET expires_at = now() - interval '1 second' "
                          "WHERE session_id = :s AND status = 'held'"), {"s": session["id"]})
    await page.get_by_label("First name").fill("Lee")
    await page.get_by_label("Last name").fill("Late")
    await page.get_by_role("button", name="Confirm booking").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_have_text("Your hold on these spots ended, so they were released. Please choose a time again.")
    await expect(page.locator("#h-time")).to_be_focused()  # back to choosing a time
    await expect(page.get_by_role("button", name=f"{start:%H:%M}, 5 spots left")).to_be_enabled()  # released

    # The business is suspended meanwhile (403 organization_suspended).
    suspended = await client.patch(f"/v1/platform/organizations/{tenant.organization_id}",
                                   headers=platform_admin.headers, json={"status": "suspended"})
    assert suspended.status_code == 200, suspended.text
    await page.get_by_role("button", name=f"{start:%H:%M}, 5 spots left").click()
    await expect(page.get_by_label("Email", exact=True)).to_have_value("late@example.com")
    await page.get_by_role("button", name="Hold these spots").click()
    await expect(alert).to_have_text("This business is not taking bookings at the moment.")
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM slot_reservations WHERE session_id = :s AND status = 'held'"),
                            {"s": session["id"]}).scalar_one() == 0
