"""The pages' Jinja2 environment and the one way a page is rendered."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse

from bookingtms.notifications.render import local_time, money
from bookingtms.web import session

HERE = Path(__file__).parent
STATIC = HERE / "static"


@lru_cache(maxsize=256)
def _fingerprint(path: str) -> str:
    try:
        return hashlib.sha256((STATIC / path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "missing"


def static_url(path: str) -> str:
    """/static/<path>?v=<content hash>: served with a year-long cache, so a changed file gets a new URL."""
    return f"/static/{path}?v={_fingerprint(path)}"


def _zone(tz: str | None):
    try:
        return ZoneInfo(tz) if tz else None
    except (KeyError, ValueError):
        return None


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def short_time(value: Any, tz: str | None = None) -> str:
    """'18:00' in the venue's zone."""
    moment = _as_datetime(value)
    if moment is None:
        return ""
    zone = _zone(tz)
    return (moment.astimezone(zone) if zone else moment).strftime("%H:%M")


def short_datetime(value: Any, tz: str | None = None) -> str:
    """'Fri 14 Mar 2026, 18:00' in the venue's zone."""
    moment = _as_datetime(value)
    if moment is None:
        return ""
    zone = _zone(tz)
    return (moment.astimezone(zone) if zone else moment).strftime("%a %d %b %Y, %H:%M")


def long_date(value: Any) -> str:
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return value.strftime("%A %d %B %Y") if value else ""


@lru_cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html", "svg"]),
                      undefined=StrictUndefined)
    env.filters.update(money=money, local_time=local_time, short_time=short_time, short_datetime=short_datetime,
                       long_date=long_date)
    env.globals.update(static=static_url)
    return env


def render(request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> HTMLResponse:
    """Renders `template` with the request, its CSRF token and the signed-in user (`me`, or None)."""
    context.setdefault("me", getattr(request.state, "page_principal", None))
    context.setdefault("flash", session.take_flash(request))
    html = environment().get_template(template).render(
        request=request, csrf_token=session.csrf_token(request), csrf_field=session.CSRF_FIELD, **context)
    response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})
    return response


def redirect(request: Request, url: str, flash: str | None = None) -> RedirectResponse:
    """303 to `url` (after a form post), with a one-time message shown by the next page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        session.set_flash(request, response, flash)
    return response
