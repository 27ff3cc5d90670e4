"""Renders a notification from its Jinja2 templates (templates/<kind>.txt and <kind>.html; SMS:
<kind>.sms.txt). Payload values are the template's variables, plus `organization_name`."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

TEMPLATES = Path(__file__).parent / "templates"

SUBJECTS = {
    "booking_confirmation": "Booking {{ reference }} confirmed: {{ activity }}, {{ start_time | local_time(timezone) }}",
    "booking_cancellation": "Booking {{ reference }} cancelled",
    "reminder": "Reminder: {{ activity }}, {{ start_time | local_time(timezone) }}",
    "welcome": "Welcome to BookingTMS, {{ organization }}",
    "staff_invite": "You have been invited to {{ organization }} on BookingTMS",
    "password_reset": "Reset your BookingTMS password",
}

ZERO_DECIMAL = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF",
                "XOF", "XPF"}


class UnknownKind(Exception):
    pass


def money(amount: Any, currency: str | None) -> str:
    currency = (currency or "").strip().upper()
    try:
        amount = int(amount or 0)
    except (TypeError, ValueError):
        return f"{amount} {currency}".strip()
    if currency in ZERO_DECIMAL:
        return f"{amount:,} {currency}"
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100:,}.{abs(amount) % 100:02d} {currency}".strip()


def local_time(value: Any, timezone: str | None) -> str:
    """An ISO timestamp shown in the venue's time zone: 'Friday 14 March 2026, 18:00 EDT'."""
    if not value:
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    try:
        moment = moment.astimezone(ZoneInfo(timezone)) if timezone else moment
    except (KeyError, ValueError):
        pass
    return moment.strftime("%A %d %B %Y, %H:%M %Z").strip()


@lru_cache
def _environment(html: bool) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]) if html else False,
                      undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=False)
    env.filters["money"] = money
    env.filters["local_time"] = local_time
    return env


def _context(kind: str, payload: dict[str, Any], organization_name: str, extra: dict[str, Any]) -> dict[str, Any]:
    from bookingtms.config import get_settings

    defaults: dict[str, Any] = {
        "first_name": None, "full_name": None, "email": None, "organization": organization_name,
        "login_url": f"{get_settings().base_url.rstrip('/')}/admin", "temporary_password": None,
        "refund_amount": 0, "refund_percent": None, "currency": "", "venue_address": None, "role": "staff",
        "timezone": "UTC", "guests": 1, "total_amount": 0, "reset_url": "", "activity": "", "venue": "",
        "reference": "", "start_time": None,
    }
    return {**defaults, **{k: v for k, v in payload.items() if v is not None or k not in defaults}, **extra,
            "organization_name": organization_name}


def render_email(kind: str, payload: dict[str, Any], organization_name: str,
                 extra: dict[str, Any] | None = None) -> tuple[str, str, str]:
    """(subject, plain text, HTML)."""
    if kind not in SUBJECTS:
        raise UnknownKind(f"no email templates for notification kind {kind!r}")
    context = _context(kind, payload, organization_name, extra or {})
    try:
        text = _environment(False).get_template(f"{kind}.txt").render(context)
        html = _environment(True).get_template(f"{kind}.html").render(context)
    except TemplateNotFound as exc:
        raise UnknownKind(f"missing template {exc.name}") from None
    subject = " ".join(_subject_template(kind).render(context).split())
    return subject, text, html


@lru_cache
def _subject_template(kind: str):
    """Compiled once per kind: Jinja compiles a string template anew on every from_string (an eighth of
    what delivering a confirmation cost the job loop)."""
    return _environment(False).from_string(SUBJECTS[kind])


def render_sms(kind: str, payload: dict[str, Any], organization_name: str,
               extra: dict[str, Any] | None = None) -> str:
    try:
        template = _environment(False).get_template(f"{kind}.sms.txt")
    except TemplateNotFound:
        raise UnknownKind(f"no SMS template for notification kind {kind!r}") from None
    return " ".join(template.render(_context(kind, payload, organization_name, extra or {})).split())
