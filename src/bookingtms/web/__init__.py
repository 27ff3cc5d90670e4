"""The pages: the booking widget and its loader, the customer portal, the staff dashboard (/admin)
and the platform console (/platform). Server-rendered Jinja2 with small vanilla JS; no Node build.

Each area is a module with its own router (widget.py, portal.py, admin_*.py, platform_console.py,
media.py, auth_pages.py); they call the domain services, never the API routers, with the same
permission strings as the API (web/session.py). `install(app)` mounts them, the static files and
the HTML error pages."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from bookingtms.web import session

# Paths answered with HTML error pages (and a sign-in redirect) instead of problem+json.
PAGE_PREFIXES = ("/admin", "/platform", "/auth/", "/widget/", "/my-booking")


def is_page(path: str) -> bool:
    return path.startswith(PAGE_PREFIXES)


def install(app: FastAPI) -> None:
    from bookingtms.web import (admin_bookings, admin_catalog, admin_settings, auth_pages, media, platform_console,
                                portal, static, widget)

    static.mount(app)
    app.add_middleware(session.PageCookiesMiddleware)
    for module in (auth_pages, widget, portal, admin_bookings, admin_catalog, admin_settings, platform_console,
                   media):
        app.include_router(module.router, include_in_schema=False, dependencies=[Depends(session.csrf_protect)])
