"""Two customers race for the last spot of a session, each in their own browser: both press Hold at
the same moment; exactly one gets the hold, the other is told the spot is gone, and that time greys
out on every open widget without a reload (live updates over SSE)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect
from sqlalchemy import text

from tests.e2e.test_widget_booking import find_day
from tests.factories import future_session, make_activity

pytestmark = pytest.mark.xdist_group("browser")

# The loser is told either by the API's answer to its own hold (409 sold_out) or, when the winner's
# hold reached its page over the live stream first, by the widget itself.
SOLD_OUT = re.compile(r"^Sorry, (the last spots at this time have just been taken|\d\d:\d\d has just sold out)\. "
                      r"Please choose another time\.$")


async def open_time(new_page, url: str, start: datetime, email: str | None):
    """A customer's widget showing the session's day, the time chosen (if `email`) and the email typed."""
    page = await new_page(width=900, height=900)
    await page.goto(url)
    await page.get_by_role("button", name="Choose dates").click()
    await expect(page.locator("#widget")).to_have_attribute("data-live", "connected")
    await (await find_day(page, start)).click()
    time = page.get_by_role("button", name=re.compile(f"^{start:%H:%M}, "))
    await expect(time).to_have_accessible_name(f"{start:%H:%M}, 1 spot left")
    if email:
        await time.click()
        await page.get_by_label("Email", exact=True).fill(email)
    return page


async def test_two_customers_race_for_the_last_spot(client, tenant, live_server, new_page, owner_engine):
    activity = await make_activity(client, tenant, capacity=3, min_players=1, max_players=3)
    session = await future_session(client, tenant, activity, days_ahead=2)
    start = datetime.fromisoformat(session["start_time"]).astimezone(ZoneInfo("America/New_York"))
    staff = await client.post("/v1/bookings", headers=tenant.headers, json={
        "session_id": session["id"], "guest_count": 2,
        "customer": {"email": "early@example.com", "first_name": "Early", "last_name": "Bird"}})
    assert staff.status_code == 201, staff.text  # one spot left

    url = f"{live_server.url}/widget/{tenant.embed_key}"
    ana, ben, watcher = await asyncio.gather(open_time(new_page, url, start, "ana@example.com"),
                                             open_time(new_page, url, start, "ben@example.com"),
                                             open_time(new_page, url, start, None))
    buttons = [p.get_by_role("button", name="Hold these spots") for p in (ana, ben)]
    for button in buttons:
        await expect(button).to_be_enabled()
    # Both press at the same moment (a click each, dispatched together: no actionability waits
    # between them that could let the first hold's live update reach the second page before it
    # presses). The loser's SOLD_OUT message below is the API's 409 answer to its own request.
    await asyncio.gather(*(b.evaluate("button => button.click()") for b in buttons))

    held = [p for p in (ana, ben) if await _outcome(p) == "held"]
    lost = [p for p in (ana, ben) if p not in held]
    assert len(held) == 1 and len(lost) == 1
    winner, loser = held[0], lost[0]
    await expect(winner.locator("#w-countdown")).to_have_text(re.compile(r"^[0-5]:\d\d$"))
    await expect(loser.get_by_role("alert")).to_have_text(SOLD_OUT)
    gone = loser.get_by_role("button", name=f"{start:%H:%M}, sold out")
    await expect(gone).to_be_disabled()
    # The watcher did nothing: the change reached its page over the live event stream.
    await expect(watcher.get_by_role("button", name=f"{start:%H:%M}, sold out")).to_be_disabled()
    await expect(watcher.get_by_role("button", name=re.compile(f"^{start:%H:%M}, "))).to_have_class(re.compile("is-sold-out"))

    with owner_engine.connect() as conn:
        holds = conn.execute(text("SELECT customer_email, status FROM slot_reservations WHERE session_id = :s"),
                             {"s": session["id"]}).all()
        left = conn.execute(text("SELECT capacity_remaining FROM activity_sessions WHERE id = :s"),
                            {"s": session["id"]}).scalar_one()
    assert len(holds) == 1 and holds[0].status == "held"
    assert holds[0].customer_email == ("ana@example.com" if winner is ana else "ben@example.com")
    assert left == 0


async def _outcome(page) -> str:
    """held | sold_out, whichever the page shows first."""
    details, alert = page.locator("#h-details"), page.get_by_role("alert")
    await expect(details.or_(alert)).to_be_visible()
    return "held" if await details.is_visible() else "sold_out"
