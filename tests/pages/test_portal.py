"""The customer portal: the signed link to a booking (from the confirmation email and the widget),
the refund shown before cancelling, cancelling through the page, and the lookup by reference and
email for those without the link."""

from __future__ import annotations

import base64
import email
import random
import socket
import uuid
from datetime import datetime
from email import policy
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from bookingtms import cache
from bookingtms.bookings import links
from bookingtms.config import get_settings
from bookingtms.notifications import jobs
from tests.factories import future_session, hold, make_activity
from tests.pages.helpers import PageClient

POLICY = {"full_refund_hours": 72, "partial_refund_hours": 24, "partial_refund_percent": 50}


async def widget_booking(client, tenant, session_id: str, spots: int = 2, email_: str = "Rita.Ref@Example.com") -> dict:
    """Hold and check out as the widget does; the checkout's answer (booking, payment, manage_url)."""
    held = await hold(client, tenant, session_id, spots, email_)
    assert held.status_code == 201, held.text
    done = await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations/{held.json()['reservation_id']}/checkout",
                             json={"customer": {"email": email_, "first_name": "Rita", "last_name": "Ref"}})
    assert done.status_code == 201, done.text
    return done.json()


def path_of(url: str) -> str:
    return urlsplit(url).path


def mark_paid(owner_engine, booking_id: str) -> None:
    # Paid at the venue, recorded by staff (as tests/calendars/test_customer_self_service.py does).
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE bookings SET payment_status = 'paid' WHERE id = :id"), {"id": booking_id})


def stored(owner_engine, booking_id: str) -> dict:
    with owner_engine.connect() as conn:
        return dict(conn.execute(text(
            "SELECT b.status, b.refund_amount, b.cancelled_by, s.capacity_remaining FROM bookings b "
            "JOIN activity_sessions s ON s.organization_id = b.organization_id AND s.id = b.session_id "
            "WHERE b.id = :id"), {"id": booking_id}).mappings().one())


def browser_at_own_address(app) -> PageClient:
    """A browser with an address of its own (failed lookups are counted per address, and test runs
    in parallel may share one Redis)."""
    pc = PageClient()
    pc.address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    pc.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(pc.address, 40000)),
                                base_url="http://testserver", follow_redirects=False, timeout=30)
    return pc


@pytest.fixture
async def pages(app):
    async with browser_at_own_address(app) as pc:
        yield pc


async def test_signed_link_shows_the_booking_in_the_venues_time(client, tenant, pages):
    activity = await make_activity(client, tenant, price_amount=3000)
    session = await future_session(client, tenant, activity, days_ahead=5)
    done = await widget_booking(client, tenant, session["id"])
    page = await pages.get(path_of(done["manage_url"]))
    assert page.status_code == 200, page.text
    body = page.text
    start = datetime.fromisoformat(session["start_time"]).astimezone(ZoneInfo("America/New_York"))
    assert done["booking"]["reference"] in body and activity["name"] in body
    assert start.strftime("%A %d %B %Y, %H:%M") in body and "America/New_York" in body
    assert "badge-confirmed" in body and "60.00 USD" in body and "To be paid at the venue" in body
    assert "Rita Ref" in body
    assert page.headers["x-robots-tag"] == "noindex, nofollow"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    ics = await pages.get(path_of(done["manage_url"]) + "/booking.ics")
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    assert f'filename="booking-{done["booking"]["reference"]}.ics"' in ics.headers["content-disposition"]
    calendar = icalendar.Calendar.from_ical(ics.content)
    [vevent] = calendar.walk("VEVENT")
    assert vevent["dtstart"].params["TZID"] == "America/New_York" and vevent["dtstart"].dt == start
    assert done["booking"]["reference"] in str(vevent["description"])
    assert [str(tz["tzid"]) for tz in calendar.walk("VTIMEZONE")] == ["America/New_York"]


async def test_tampered_or_foreign_links_are_404(client, tenant, pages):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    first = await widget_booking(client, tenant, session["id"], spots=1, email_="one@example.com")
    second = await widget_booking(client, tenant, session["id"], spots=1, email_="two@example.com")
    token = path_of(first["manage_url"]).rsplit("/", 1)[1]
    ids, signature = token.split(".")
    other_ids = path_of(second["manage_url"]).rsplit("/", 1)[1].split(".")[0]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    # The last character of a 16-byte signature carries 4 unused bits: another spelling of the same
    # bytes (one of those bits set) is not the token either.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = signature[:-1] + alphabet[alphabet.index(signature[-1]) + 1]
    assert base64.urlsafe_b64decode(respelled + "==") == base64.urlsafe_b64decode(signature + "==")
    org, booking = uuid.UUID(tenant.organization_id), uuid.UUID(first["booking"]["id"])
    for bad in (f"{ids}.{flipped}",  # signature changed
                f"{ids}.{respelled}",  # the same signature spelled another way
                f"{other_ids}.{signature}",  # another booking's ids with this signature
                links.manage_token(org, booking, "someone.else@example.com"),  # signed for another email
                "not-a-token", "a.b", f"{ids}.{signature}.x"):
        response = await pages.get(f"/my-booking/{bad}")
        assert response.status_code == 404, bad
        assert "This booking link is not valid." in response.text
        assert first["booking"]["reference"] not in response.text
        assert (await pages.get(f"/my-booking/{bad}/booking.ics")).status_code == 404
    assert (await pages.get(path_of(first["manage_url"]))).status_code == 200


async def test_refund_shown_before_cancelling_follows_the_policy_and_cancelling_returns_capacity(
        client, tenant, pages, owner_engine):
    activity = await make_activity(client, tenant, capacity=6, price_amount=3000, cancellation_policy=POLICY)
    session = await future_session(client, tenant, activity, days_ahead=2)  # 24 to 72 hours ahead: 50 %
    done = await widget_booking(client, tenant, session["id"], spots=2)
    booking_id = done["booking"]["id"]
    mark_paid(owner_engine, booking_id)
    link = path_of(done["manage_url"])
    assert stored(owner_engine, booking_id)["capacity_remaining"] == 4

    page = (await pages.get(link)).text
    assert "If you cancel now, you get 30.00 USD back (50%)." in page
    assert "Full refund when cancelled at least 72 hours before the start; 50% when cancelled at least 24 hours before" in page
    confirm = await pages.get(f"{link}/cancel")
    assert confirm.status_code == 200
    assert "You get 30.00 USD back (50% under the policy)." in confirm.text
    assert 'name="csrf_token"' in confirm.text
    assert stored(owner_engine, booking_id)["status"] == "confirmed"  # looking changes nothing

    cancelled = await pages.post(f"{link}/cancel")
    assert cancelled.status_code == 303 and cancelled.headers["location"] == link
    after = await pages.get(link)
    assert "Your booking is cancelled. 30.00 USD will be refunded." in after.text  # the one-time message
    assert "badge-cancelled" in after.text and "Refund: <strong>30.00 USD</strong>" in after.text
    assert "Add to calendar" not in after.text
    row = stored(owner_engine, booking_id)
    assert row["status"] == "cancelled" and row["refund_amount"] == 3000 and row["cancelled_by"] == "customer"
    assert row["capacity_remaining"] == 6  # the spots are free again
    public = await client.get(f"/v1/public/venues/{tenant.embed_key}/availability",
                              params={"activity_id": activity["id"], "from": session["start_time"][:10]})
    [again] = [s for s in public.json()["sessions"] if s["id"] == session["id"]]
    assert again["capacity_remaining"] == 6

    twice = await pages.post(f"{link}/cancel")
    assert twice.status_code == 409 and "This booking is already cancelled." in twice.text
    assert (await pages.get(f"{link}/booking.ics")).status_code == 409
    assert stored(owner_engine, booking_id)["refund_amount"] == 3000


async def test_unpaid_booking_says_nothing_is_refunded_and_started_session_cannot_be_cancelled(
        client, tenant, pages, owner_engine):
    activity = await make_activity(client, tenant, price_amount=1500)
    session = await future_session(client, tenant, activity, days_ahead=4)
    done = await widget_booking(client, tenant, session["id"], spots=1)
    link = path_of(done["manage_url"])
    assert "Nothing has been paid yet, so cancelling costs nothing." in (await pages.get(link)).text

    with owner_engine.begin() as conn:  # the session started an hour ago
        conn.execute(text("UPDATE activity_sessions SET start_time = now() - interval '1 hour', "
                          "end_time = now() WHERE id = :id"), {"id": session["id"]})
    page = await pages.get(link)
    assert "This session has started, so it can no longer be cancelled here." in page.text
    refused = await pages.post(f"{link}/cancel")
    assert refused.status_code == 409 and "The session has started; ask the venue." in refused.text
    assert stored(owner_engine, done["booking"]["id"])["status"] == "confirmed"


async def test_cancel_form_without_its_csrf_token_is_refused(client, tenant, pages, owner_engine):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    done = await widget_booking(client, tenant, session["id"], spots=1)
    link = path_of(done["manage_url"])
    await pages.get(link)  # the browser has its CSRF cookie
    forged = await pages.http.post(f"{link}/cancel", data={})
    assert forged.status_code == 403 and "reload the page" in forged.text
    wrong = await pages.http.post(f"{link}/cancel", data={"csrf_token": "0" * 64})
    assert wrong.status_code == 403
    other_site = await pages.post(f"{link}/cancel", headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert stored(owner_engine, done["booking"]["id"])["status"] == "confirmed"


# ------------------------------------------------------------------------------------------------
# The confirmation email carries the link
# ------------------------------------------------------------------------------------------------
class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def inbox():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, f"smtp://127.0.0.1:{port}"
    controller.stop()


async def test_confirmation_email_links_to_the_booking_page(client, tenant, pages, inbox):
    box, url = inbox
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    done = await widget_booking(client, tenant, session["id"], spots=1, email_="mail.me@example.com")
    settings = get_settings().model_copy(update={"email_backend": "smtp", "smtp_url": url})
    assert await jobs.deliver_for_organization(uuid.UUID(tenant.organization_id), settings=settings) >= 1
    [msg] = [m for m in box.messages if m["To"] == "mail.me@example.com"]
    plain = msg.get_body(("plain",)).get_content()
    html_body = msg.get_body(("html",)).get_content()
    assert done["manage_url"] in plain
    assert f'href="{done["manage_url"]}"' in html_body
    assert done["manage_url"].startswith(get_settings().base_url.rstrip("/") + "/my-booking/")
    page = await pages.get(path_of(done["manage_url"]))
    assert page.status_code == 200 and done["booking"]["reference"] in page.text


# ------------------------------------------------------------------------------------------------
# Lookup by reference and email
# ------------------------------------------------------------------------------------------------
def lookup_key(pages) -> str:
    return f"bookingtms:portal-lookup:{pages.address}"


async def test_lookup_finds_the_booking_or_says_no_match_whichever_was_wrong(client, tenant, pages):
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    done = await widget_booking(client, tenant, session["id"], spots=1, email_="Lou.Kup@Example.com")
    reference = done["booking"]["reference"]

    form = await pages.get("/my-booking")
    assert form.status_code == 200 and 'name="reference"' in form.text and 'name="email"' in form.text

    wrong_email = await pages.post("/my-booking", {"reference": reference, "email": "mallory@example.com"})
    wrong_ref = await pages.post("/my-booking", {"reference": "ZZZZZ-ZZZZZ", "email": "lou.kup@example.com"})
    assert wrong_email.status_code == wrong_ref.status_code == 404
    assert "No booking matches this reference and email." in wrong_email.text
    assert "No booking matches this reference and email." in wrong_ref.text
    assert activity["name"] not in wrong_email.text

    empty = await pages.post("/my-booking", {"reference": "", "email": "nope"})
    assert empty.status_code == 422
    assert "Enter your booking reference" in empty.text and "Enter a valid email address" in empty.text

    found = await pages.post("/my-booking", {"reference": reference.lower(), "email": " LOU.kup@example.com "})
    assert found.status_code == 303 and found.headers["location"] == path_of(done["manage_url"])
    assert reference in (await pages.get(found.headers["location"])).text
    assert int(await cache.get_redis().get(lookup_key(pages))) == 2  # the two failures, not the rest


async def test_repeated_failed_lookups_are_slowed_down(app, pages):
    for _ in range(10):
        answer = await pages.post("/my-booking", {"reference": "ZZZZZ-ZZZZZ", "email": "guess@example.com"})
        assert answer.status_code == 404
    limited = await pages.post("/my-booking", {"reference": "ZZZZZ-ZZZZZ", "email": "guess@example.com"})
    assert limited.status_code == 429 and "Too many attempts" in limited.text
    assert int(limited.headers["retry-after"]) > 0
    assert 0 < await cache.get_redis().ttl(lookup_key(pages)) <= 600  # it ends
    async with browser_at_own_address(app) as elsewhere:  # another address is not held up
        assert (await elsewhere.post("/my-booking", {"reference": "ZZZZZ-ZZZZZ", "email": "x@example.com"})
                ).status_code == 404
