"""The channels a notification leaves by: email (`file`, `smtp`, `resend`) and SMS (Twilio).
Each send returns the provider's message id; a failure raises DeliveryError, `permanent` when
retrying cannot help (a refused recipient, a 4xx from the provider)."""

from __future__ import annotations

import base64
import os
import uuid
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from bookingtms.config import Settings

RESEND_URL = "https://api.resend.com/emails"
TWILIO_URL = "https://api.twilio.com/2010-04-01/Accounts/{sid}/Messages.json"
TIMEOUT = 30.0


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def email_backend(settings: Settings) -> str:
    if settings.email_backend:
        return settings.email_backend.strip().lower()
    if settings.smtp_url:
        return "smtp"
    if settings.resend_api_key:
        return "resend"
    return "file"


def message_id(settings: Settings, outbox_id: uuid.UUID) -> str:
    """Derived from the outbox row, so a message sent again after a crash carries the same id."""
    domain = parseaddr(settings.email_from)[1].rpartition("@")[2] or "bookingtms.dev"
    return f"<outbox-{outbox_id}@{domain}>"


def build_email(settings: Settings, outbox_id: uuid.UUID, recipient: str, subject: str, text: str, html: str,
                attachments: list[tuple[str, str, bytes]] = ()) -> EmailMessage:
    """multipart/alternative (text, HTML), wrapped in multipart/mixed when there are attachments
    (filename, MIME type, content)."""
    msg = EmailMessage()
    msg["From"] = settings.email_from
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id(settings, outbox_id)
    msg["X-BookingTMS-Outbox-Id"] = str(outbox_id)
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    for filename, mime, content in attachments:
        maintype, _, subtype = mime.partition("/")
        params = {"method": "PUBLISH"} if mime == "text/calendar" else {}
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename, params=params)
    return msg


# ---------------------------------------------------------------------------------------------
# Email backends
# ---------------------------------------------------------------------------------------------
def _send_file(settings: Settings, outbox_id: uuid.UUID, msg: EmailMessage) -> str:
    folder = Path(settings.data_dir) / "mail"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{outbox_id}.eml"
    tmp = folder / f".{outbox_id}.{os.getpid()}.tmp"
    tmp.write_bytes(msg.as_bytes())
    os.replace(tmp, path)  # a resend replaces the file: one message per outbox row
    return msg["Message-ID"]


async def _send_smtp(settings: Settings, msg: EmailMessage) -> str:
    import aiosmtplib

    if not settings.smtp_url:
        raise DeliveryError("SMTP_URL is not set", permanent=True)
    url = urlsplit(settings.smtp_url)
    if url.scheme not in ("smtp", "smtps"):
        raise DeliveryError(f"SMTP_URL must be smtp:// or smtps://, not {url.scheme}://", permanent=True)
    implicit_tls = url.scheme == "smtps"
    try:
        await aiosmtplib.send(
            msg, hostname=url.hostname or "localhost", port=url.port or (465 if implicit_tls else 25),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            use_tls=implicit_tls, start_tls=None if not implicit_tls else False, timeout=TIMEOUT)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        raise DeliveryError(f"recipient refused: {exc}", permanent=all(c >= 500 for c in codes)) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP {exc.code}: {exc.message}", permanent=exc.code >= 500) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}") from None
    return msg["Message-ID"]


def _http_failure(service: str, response: httpx.Response) -> DeliveryError:
    permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 409, 425, 429)
    return DeliveryError(f"{service} {response.status_code}: {response.text[:300]}", permanent=permanent)


async def _send_resend(settings: Settings, outbox_id: uuid.UUID, msg: EmailMessage) -> str:
    if not settings.resend_api_key:
        raise DeliveryError("RESEND_API_KEY is not set", permanent=True)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    attachments = [{"filename": part.get_filename(),
                    "content": base64.b64encode(part.get_payload(decode=True)).decode()}
                   for part in msg.iter_attachments()]
    body = {"from": msg["From"], "to": [msg["To"]], "subject": msg["Subject"],
            "text": text.get_content() if text else "", "html": html.get_content() if html else "",
            "headers": {"Message-ID": msg["Message-ID"], "X-BookingTMS-Outbox-Id": str(outbox_id)}}
    if attachments:
        body["attachments"] = attachments
    return await _post("Resend", RESEND_URL, id_field="id", fallback_id=msg["Message-ID"], json=body, headers={
        "Authorization": f"Bearer {settings.resend_api_key}", "Idempotency-Key": f"outbox-{outbox_id}"})


async def _post(provider: str, url: str, *, id_field: str, fallback_id: str, **request) -> str:
    """POSTs to an HTTP provider; returns its message id. A transport failure is worth retrying; an
    answer of 300 or more is judged by _http_failure."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.post(url, **request)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{provider}: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 300:
        raise _http_failure(provider, response)
    try:
        return str(response.json()[id_field])
    except (ValueError, KeyError, TypeError):
        return fallback_id


async def send_email(settings: Settings, outbox_id: uuid.UUID, msg: EmailMessage) -> str:
    backend = email_backend(settings)
    if backend == "file":
        return _send_file(settings, outbox_id, msg)
    if backend == "smtp":
        return await _send_smtp(settings, msg)
    if backend == "resend":
        return await _send_resend(settings, outbox_id, msg)
    raise DeliveryError(f"unknown email backend {backend!r}", permanent=True)


# ---------------------------------------------------------------------------------------------
# SMS
# ---------------------------------------------------------------------------------------------
async def send_sms(settings: Settings, outbox_id: uuid.UUID, to: str, body: str) -> str:
    sid, token, sender = settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_from_number
    if not (sid and token and sender):
        raise DeliveryError("Twilio is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER)",
                            permanent=True)
    return await _post("Twilio", TWILIO_URL.format(sid=sid), id_field="sid", fallback_id=f"twilio:{outbox_id}",
                       auth=(sid, token), data={"To": to, "From": sender, "Body": body})
