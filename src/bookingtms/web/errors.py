"""Errors on page paths: a sign-in redirect, or an HTML page saying what went wrong."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import RedirectResponse

from bookingtms.errors import AppError
from bookingtms.web import is_page, session


def page_error(request, error: AppError):
    if not is_page(request.url.path):
        return None
    if isinstance(error, session.LoginRequired):
        target = {"password_change": "/auth/password", "mfa_enrollment": "/auth/mfa/setup"}.get(error.step or "")
        url = f"{target}?next={quote(error.next_url, safe='/')}" if target else session.login_url(error.next_url)
        return RedirectResponse(url, status_code=303)
    from bookingtms.web.templating import render

    layout = "widget/layout.html" if request.url.path.startswith("/widget/") else "base.html"
    return render(request, "error.html", status=error.status, error=error, layout=layout,
                  headers={k: v for k, v in error.headers.items() if k.lower() == "retry-after"})
