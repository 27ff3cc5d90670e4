"""Notification delivery through the outbox: a real SMTP server (aiosmtpd) receives the booking
confirmation with text, HTML and an .ics in the venue's time zone; a failing server leads to
retries with growing delays, then a dead letter staff can see and requeue; concurrent or crashed
senders lose nothing and send nothing twice; the file backend writes .eml files; Resend and Twilio
are called as their APIs expect; each booking is reminded once."""

from __future__ import annotations

import asyncio
import base64
import email
import json
import socket
import uuid
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest
import respx
from aiosmtpd.controller import Controller
from sqlalchemy import text

from bookingtms.config import get_settings
from bookingtms.db.engine import DbContext, organizations_with_work, tenant_transaction
from bookingtms.notifications import jobs
from tests.factories import future_session, hold, make_activity


# ------------------------------------------------------------------------------------------------
# A real SMTP server on a free loopback port
# ------------------------------------------------------------------------------------------------
class Inbox:
    def __init__(self, answer: str | None = None):
        self.answer = answer  # e.g. "451 4.3.0 try again later": refuse every message with it
        self.messages: list[EmailMessage] = []
        self.refused = 0

    async def handle_DATA(self, server, session, envelope):
        if self.answer:
            self.refused += 1
            return self.answer
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    started = []

    def start(answer: str | None = None) -> tuple[Inbox, str]:
        inbox = Inbox(answer)
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        started.append(controller)
        return inbox, f"smtp://127.0.0.1:{port}"

    yield start
    for controller in started:
        controller.stop()


def settings_with(**values):
    return get_settings().model_copy(update=values)


def outbox(owner_engine, org_id: str, kind: str | None = None) -> list[dict]:
    with owner_engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT *, extract(epoch FROM next_attempt_at - clock_timestamp()) AS due_in FROM notification_outbox "
            "WHERE organization_id = :o AND (CAST(:k AS text) IS NULL OR kind = :k) ORDER BY created_at, id"),
            {"o": org_id, "k": kind}).mappings().all()
    return [dict(r) for r in rows]


def make_due(owner_engine, org_id: str) -> None:
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE notification_outbox SET next_attempt_at = now() WHERE organization_id = :o "
                          "AND status = 'pending'"), {"o": org_id})


async def book(client, tenant, session_id: str, email_: str, phone: str | None = None) -> dict:
    held = await hold(client, tenant, session_id, 1, email_)
    assert held.status_code == 201, held.text
    customer = {"email": email_, "first_name": "Cal", "last_name": "Endar"}
    if phone:
        customer["phone"] = phone
    done = await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations/"
                             f"{held.json()['reservation_id']}/checkout", json={"customer": customer})
    assert done.status_code == 201, done.text
    return done.json()["booking"]


def parts(msg: EmailMessage) -> tuple[str, str, list[EmailMessage]]:
    return (msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content(),
            list(msg.iter_attachments()))


def assert_booking_ics(attachment: EmailMessage, reference: str, zone: str) -> icalendar.Event:
    assert attachment.get_content_type() == "text/calendar" and attachment.get_filename() == "booking.ics"
    calendar = icalendar.Calendar.from_ical(attachment.get_payload(decode=True))
    events = calendar.walk("VEVENT")
    assert len(events) == 1 and reference in str(events[0]["description"])
    assert events[0]["dtstart"].params["TZID"] == zone
    assert [str(tz["tzid"]) for tz in calendar.walk("VTIMEZONE")] == [zone]
    return events[0]


# ------------------------------------------------------------------------------------------------
async def test_confirmation_arrives_over_real_smtp_with_text_html_and_ics(client, tenant, owner_engine,
                                                                          smtp_server):
    inbox, url = smtp_server()
    activity = await make_activity(client, tenant, price_amount=4200)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], "guest@example.com")

    org = uuid.UUID(tenant.organization_id)
    sent = await jobs.deliver_for_organization(org, settings=settings_with(email_backend="smtp", smtp_url=url))
    assert sent == 2  # the owner's welcome and the confirmation

    [msg] = [m for m in inbox.messages if m["To"] == "guest@example.com"]
    [row] = outbox(owner_engine, tenant.organization_id, "booking_confirmation")
    assert row["status"] == "sent" and row["attempts"] == 1 and row["sent_at"] is not None
    assert str(row["booking_id"]) == booking["id"]
    assert msg["Message-ID"] == row["provider_message_id"] and str(row["id"]) in msg["Message-ID"]
    assert booking["reference"] in msg["Subject"]
    plain, html, attachments = parts(msg)
    assert booking["reference"] in plain and "42.00 USD" in plain and activity["name"] in plain
    assert booking["reference"] in html and html.lstrip().lower().startswith("<!doctype html>")
    start = datetime.fromisoformat(session["start_time"]).astimezone(ZoneInfo("America/New_York"))
    assert start.strftime("%H:%M") in plain  # shown in the venue's local time
    event = assert_booking_ics(attachments[0], booking["reference"], "America/New_York")
    assert event["dtstart"].dt == start

    [welcome] = [m for m in inbox.messages if m["To"] == tenant.owner_email]
    assert "Welcome" in welcome["Subject"] and tenant.owner_email in parts(welcome)[0]

    # Nothing is due any more: a second round sends nothing.
    assert await jobs.deliver_for_organization(org, settings=settings_with(email_backend="smtp", smtp_url=url)) == 0
    assert len(inbox.messages) == 2


async def test_failing_server_retries_with_growing_delays_then_dead_letter_then_requeued(
        client, tenant, owner_engine, smtp_server):
    failing, failing_url = smtp_server("451 4.3.0 mailbox busy, try later")
    org = uuid.UUID(tenant.organization_id)
    settings = settings_with(email_backend="smtp", smtp_url=failing_url, notification_max_attempts=3,
                             notification_backoff_seconds=10)
    activity = await make_activity(client, tenant)
    booking = await book(client, tenant, (await future_session(client, tenant, activity))["id"], "late@example.com")

    delays = []
    for attempt in (1, 2):
        assert await jobs.deliver_for_organization(org, settings=settings) == 0
        [row] = outbox(owner_engine, tenant.organization_id, "booking_confirmation")
        assert row["status"] == "pending" and row["attempts"] == attempt and "451" in row["last_error"]
        delays.append(row["due_in"])
        # Not due yet: another round leaves it alone.
        assert await jobs.deliver_for_organization(org, settings=settings) == 0
        assert outbox(owner_engine, tenant.organization_id, "booking_confirmation")[0]["attempts"] == attempt
        make_due(owner_engine, tenant.organization_id)
    assert 9 <= delays[0] <= 12.6 and 19 <= delays[1] <= 25.1, delays  # 10 s * 2^attempts, + jitter
    assert await jobs.deliver_for_organization(org, settings=settings) == 0
    [row] = outbox(owner_engine, tenant.organization_id, "booking_confirmation")
    assert row["status"] == "dead" and row["attempts"] == 3 and "451" in row["last_error"]
    assert failing.refused >= 3

    # Staff see the dead letter (never its payload) ...
    listed = await client.get("/v1/notifications", params={"status": "dead"}, headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    dead = [n for n in listed.json()["items"] if n["kind"] == "booking_confirmation"]
    assert [n["id"] for n in dead] == [str(row["id"])] and "payload" not in dead[0]
    assert dead[0]["booking_id"] == booking["id"] and "451" in dead[0]["last_error"]
    # ... and requeue it; once the server is back it is delivered exactly once.
    retried = await client.post(f"/v1/notifications/{row['id']}/retry", headers=tenant.headers)
    assert retried.status_code == 200 and retried.json()["status"] == "pending", retried.text
    inbox, url = smtp_server()
    assert await jobs.deliver_for_organization(org, settings=settings_with(email_backend="smtp", smtp_url=url)) >= 1
    assert [m["To"] for m in inbox.messages].count("late@example.com") == 1
    assert outbox(owner_engine, tenant.organization_id, "booking_confirmation")[0]["status"] == "sent"
    again = await client.post(f"/v1/notifications/{row['id']}/retry", headers=tenant.headers)
    assert again.status_code == 409 and again.json()["code"] == "notification_not_dead"
    sent = await client.get("/v1/notifications", params={"status": "sent"}, headers=tenant.headers)
    assert str(row["id"]) in [n["id"] for n in sent.json()["items"]]


async def test_unreachable_server_is_retried_not_lost(client, tenant, owner_engine):
    org = uuid.UUID(tenant.organization_id)
    closed = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there
    settings = settings_with(email_backend="smtp", smtp_url=closed, notification_max_attempts=2,
                             notification_backoff_seconds=60)
    assert await jobs.deliver_for_organization(org, settings=settings) == 0
    [welcome] = outbox(owner_engine, tenant.organization_id, "welcome")
    assert welcome["status"] == "pending" and welcome["attempts"] == 1 and welcome["last_error"]
    assert 55 <= welcome["due_in"] <= 76
    make_due(owner_engine, tenant.organization_id)
    assert await jobs.deliver_for_organization(org, settings=settings) == 0
    assert outbox(owner_engine, tenant.organization_id, "welcome")[0]["status"] == "dead"


async def test_concurrent_and_crashed_senders_deliver_each_row_exactly_once(client, tenant, owner_engine,
                                                                            smtp_server):
    inbox, url = smtp_server()
    settings = settings_with(email_backend="smtp", smtp_url=url)
    org = uuid.UUID(tenant.organization_id)
    activity = await make_activity(client, tenant, capacity=20)
    session = await future_session(client, tenant, activity)
    for n in range(6):
        await book(client, tenant, session["id"], f"b{n}@example.com")

    # A sender claims everything and crashes before sending: the rows are leased, not lost.
    claimed, _ = await jobs.claim(org)
    assert len(claimed) == 7
    assert await jobs.deliver_for_organization(org, settings=settings) == 0 and inbox.messages == []
    with owner_engine.begin() as conn:  # the lease runs out
        conn.execute(text("UPDATE notification_outbox SET locked_until = now() - interval '1 second' "
                          "WHERE organization_id = :o"), {"o": tenant.organization_id})

    results = await asyncio.gather(*(jobs.deliver_for_organization(org, settings=settings, batch=3)
                                     for _ in range(2)))
    while sum(results) < 7 and (more := await jobs.deliver_for_organization(org, settings=settings)):
        results.append(more)
    assert sum(results) == 7, results
    rows = outbox(owner_engine, tenant.organization_id)
    assert {r["status"] for r in rows} == {"sent"} and {r["attempts"] for r in rows} == {1}
    ids = sorted(m["Message-ID"] for m in inbox.messages)
    assert ids == sorted(r["provider_message_id"] for r in rows) and len(set(ids)) == 7


async def test_file_backend_writes_parseable_eml_and_scrubs_secrets(client, tenant, owner_engine, tmp_path):
    org = uuid.UUID(tenant.organization_id)
    invited = await client.post("/v1/users", headers=tenant.headers, json={
        "email": f"new.staff.{uuid.uuid4().hex[:6]}@example.com", "full_name": "New Staff", "role": "staff"})
    assert invited.status_code == 201, invited.text
    activity = await make_activity(client, tenant)
    booking = await book(client, tenant, (await future_session(client, tenant, activity))["id"], "file@example.com")

    settings = settings_with(email_backend="file", data_dir=tmp_path)
    assert await jobs.deliver_for_organization(org, settings=settings) == 3
    rows = {r["kind"]: r for r in outbox(owner_engine, tenant.organization_id)}
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert sorted(f.stem for f in files) == sorted(str(r["id"]) for r in rows.values())
    confirmation = email.message_from_bytes((tmp_path / "mail" / f"{rows['booking_confirmation']['id']}.eml")
                                            .read_bytes(), policy=policy.default)
    assert confirmation["To"] == "file@example.com"
    assert confirmation["Message-ID"] == rows["booking_confirmation"]["provider_message_id"]
    plain, html, attachments = parts(confirmation)
    assert booking["reference"] in plain and booking["reference"] in html
    assert_booking_ics(attachments[0], booking["reference"], "America/New_York")

    invite = email.message_from_bytes((tmp_path / "mail" / f"{rows['staff_invite']['id']}.eml").read_bytes(),
                                      policy=policy.default)
    password = invite.get_body(("plain",)).get_content().split("Temporary password:")[1].split()[0]
    assert len(password) >= 8 and password in invite.get_body(("html",)).get_content()
    # Once sent, the temporary password no longer sits in the outbox.
    assert rows["staff_invite"]["payload"]["temporary_password"] == "[sent]"
    assert password not in json.dumps(rows["staff_invite"]["payload"])


async def test_resend_backend_posts_the_message_with_an_idempotency_key(client, tenant, owner_engine):
    org = uuid.UUID(tenant.organization_id)
    activity = await make_activity(client, tenant)
    booking = await book(client, tenant, (await future_session(client, tenant, activity))["id"], "re@example.com")
    settings = settings_with(email_backend="resend", resend_api_key="re_test_key", notification_backoff_seconds=30)

    def resend_api(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["to"] == [tenant.owner_email]:
            return httpx.Response(500, json={"message": "internal"})  # the welcome: retried later
        return httpx.Response(200, json={"id": "re_msg_123"})

    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://api.resend.com/emails").mock(side_effect=resend_api)
        assert await jobs.deliver_for_organization(org, settings=settings) == 1
    assert route.call_count == 2
    [request] = [c.request for c in route.calls if json.loads(c.request.content)["to"] == ["re@example.com"]]
    assert request.headers["authorization"] == "Bearer re_test_key"
    rows = {r["kind"]: r for r in outbox(owner_engine, tenant.organization_id)}
    body = json.loads(request.content)
    confirmation = rows["booking_confirmation"]
    assert body["to"] == ["re@example.com"] and booking["reference"] in body["subject"]
    assert booking["reference"] in body["text"] and booking["reference"] in body["html"]
    assert request.headers["idempotency-key"] == f"outbox-{confirmation['id']}"
    [attachment] = body["attachments"]
    assert attachment["filename"] == "booking.ics"
    icalendar.Calendar.from_ical(base64.b64decode(attachment["content"]))
    assert confirmation["status"] == "sent" and confirmation["provider_message_id"] == "re_msg_123"
    assert rows["welcome"]["status"] == "pending" and "500" in rows["welcome"]["last_error"]


async def test_reminder_is_queued_once_and_sent_by_email_and_twilio_sms(client, tenant, owner_engine):
    org = uuid.UUID(tenant.organization_id)
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE organizations SET settings = settings || '{\"sms_reminders\": \"true\"}' "
                          "WHERE id = :o"), {"o": tenant.organization_id})
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    with_phone = await book(client, tenant, session["id"], "phone@example.com", phone="+1 555 0100")
    no_phone = await book(client, tenant, session["id"], "nophone@example.com")
    start = datetime.fromisoformat(session["start_time"])

    too_early = await jobs.queue_reminders(now=start - timedelta(hours=25))
    assert not outbox(owner_engine, tenant.organization_id, "reminder") and too_early >= 0
    # 23 hours before the session; two workers at once, then again: one reminder per booking.
    await asyncio.gather(jobs.queue_reminders(now=start - timedelta(hours=23)),
                         jobs.queue_reminders(now=start - timedelta(hours=23)))
    await jobs.queue_reminders(now=start - timedelta(hours=22))
    reminders = outbox(owner_engine, tenant.organization_id, "reminder")
    assert sorted((r["channel"], r["recipient"]) for r in reminders) == [
        ("email", "nophone@example.com"), ("email", "phone@example.com"), ("sms", "+1 555 0100")]
    assert {str(r["booking_id"]) for r in reminders} == {with_phone["id"], no_phone["id"]}
    with owner_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bookings WHERE organization_id = :o "
                                 "AND reminder_sent_at IS NOT NULL"), {"o": tenant.organization_id}).scalar() == 2

    settings = settings_with(email_backend="file", twilio_account_sid="ACtest", twilio_auth_token="tok",
                             twilio_from_number="+15550199")
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://api.twilio.com/2010-04-01/Accounts/ACtest/Messages.json").mock(
            return_value=httpx.Response(201, json={"sid": "SM123"}))
        assert await jobs.deliver_for_organization(org, settings=settings) >= 3
    assert route.call_count == 1
    request = route.calls[0].request
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form["To"] == "+1 555 0100" and form["From"] == "+15550199"
    assert with_phone["reference"] in form["Body"] and activity["name"] in form["Body"]
    assert request.headers["authorization"].startswith("Basic ")
    sms = next(r for r in outbox(owner_engine, tenant.organization_id, "reminder") if r["channel"] == "sms")
    assert sms["status"] == "sent" and sms["provider_message_id"] == "SM123"


async def test_a_booking_made_within_a_day_of_its_session_does_not_make_its_organization_look_due(
        client, tenant, owner_engine):
    """Such a booking's confirmation is its reminder. Were its organization still found as having
    reminders due, round after round, the search's limit would fill up with such organizations and
    the others' customers would never be reminded."""
    activity = await make_activity(client, tenant)
    session = await future_session(client, tenant, activity)
    booking = await book(client, tenant, session["id"], "late@example.com")
    start = datetime.fromisoformat(session["start_time"])
    now = start - timedelta(hours=23)
    lookup = "organizations_with_reminders_due(:f, :u, :n)"
    params = {"f": now, "u": now + jobs.REMINDER_LEAD, "n": 1_000_000}
    org = uuid.UUID(tenant.organization_id)

    def booked(before_start: timedelta) -> None:
        with owner_engine.begin() as conn:
            conn.execute(text("UPDATE bookings SET created_at = :t WHERE id = :b"),
                         {"t": start - before_start, "b": booking["id"]})

    booked(timedelta(hours=2))
    assert org not in await organizations_with_work(lookup, params)
    await jobs.queue_reminders(now=now)
    assert not outbox(owner_engine, tenant.organization_id, "reminder")

    booked(timedelta(days=3))  # booked well ahead: due, found, reminded
    assert org in await organizations_with_work(lookup, params)
    await jobs.queue_reminders(now=now)
    assert [r["recipient"] for r in outbox(owner_engine, tenant.organization_id, "reminder")] == ["late@example.com"]


async def test_worker_round_delivers_through_the_configured_backend(client, tenant, owner_engine):
    from bookingtms import worker

    activity = await make_activity(client, tenant)
    await book(client, tenant, (await future_session(client, tenant, activity))["id"], "loop@example.com")
    result = await worker.run_once(extend=False)
    assert result["notifications_sent"] >= 2
    rows = outbox(owner_engine, tenant.organization_id)
    assert {r["status"] for r in rows} == {"sent"}
    mail = get_settings().data_dir / "mail"
    assert all((mail / f"{r['id']}.eml").exists() for r in rows)


async def test_the_due_reminder_definition_is_inlined_into_its_callers(tenant):
    """bookings_due_reminder() must stay inlinable (plain SQL, STABLE, no SECURITY DEFINER, no
    SET): otherwise every caller would compute the due bookings of all tenants and filter after."""
    async with tenant_transaction(DbContext(organization_id=tenant.organization_id)) as db:
        plan = (await db.execute(text(
            "EXPLAIN (FORMAT JSON) SELECT booking_id FROM bookings_due_reminder(now(), now() + interval '1 day') "
            "WHERE organization_id = :org"), {"org": tenant.organization_id})).scalar_one()
    text_plan = json.dumps(plan)
    assert '"Function Scan"' not in text_plan, text_plan
    assert '"bookings"' in text_plan and '"activity_sessions"' in text_plan, text_plan
