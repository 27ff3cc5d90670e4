"""Signing in to the pages: password, the second factor, a forced change of a temporary password,
MFA enrolment when the organization requires it, and signing out. The same auth service as the API."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse

from bookingtms.auth import mfa, service, state
from bookingtms.db.engine import tenant_transaction
from bookingtms.errors import AppError
from bookingtms.http.principal import Principal
from bookingtms.web import session
from bookingtms.web.forms import form_data
from bookingtms.web.templating import redirect, render

router = APIRouter()
MFA_COOKIE = "btms_mfa"


def _safe_next(url: str | None, principal: Principal | None = None) -> str:
    """Only our own paths (no //host or scheme), else the user's home."""
    # Browsers drop tabs and newlines from URLs, so "/\t/evil.example" would become "//evil.example".
    if (url and url.startswith("/") and not url.startswith("//") and "\\" not in url
            and not any(ord(c) < 0x20 or c == "\x7f" for c in url)):
        return url
    if principal is None:
        return "/auth/home"
    return "/platform" if principal.is_platform else "/admin"


def _after_sign_in(request: Request, pair: dict, next_url: str | None):
    """Where a fresh sign-in goes: a pending step first, else where the user was heading."""
    if pair.get("must_change_password"):
        target = f"/auth/password?next={quote(next_url or '', safe='/')}"
    elif pair.get("mfa_enrollment_required"):
        target = f"/auth/mfa/setup?next={quote(next_url or '', safe='/')}"
    else:
        target = next_url or "/auth/home"
    response = redirect(request, target)
    session.set_session(request, response, pair)
    response.delete_cookie(MFA_COOKIE, path="/auth/")
    return response


@router.get("/auth/home")
async def home(principal: Principal = Depends(session.page_user)):
    return RedirectResponse("/platform" if principal.is_platform else "/admin", status_code=303)


@router.get("/auth/login")
async def login_page(request: Request, next: str | None = None):
    principal = await session.signed_in(request)
    if principal is not None and not principal.restrict:
        return redirect(request, _safe_next(next, principal))
    return render(request, "auth/login.html", next=_safe_next(next) if next else "", email="", error=None)


@router.post("/auth/login")
async def login(request: Request):
    form = await form_data(request)
    email, password, next_url = form.text("email"), form.text("password", strip=False), form.text("next")
    next_url = _safe_next(next_url) if next_url else None
    try:
        pair = await service.login(email, password, challenge=True)
    except AppError as error:
        if error.code == "mfa_required" and error.extra.get("mfa_token"):
            response = redirect(request, f"/auth/mfa?next={quote(next_url or '', safe='/')}")
            response.set_cookie(MFA_COOKIE, error.extra["mfa_token"], max_age=service.MFA_TICKET_TTL_SECONDS,
                                httponly=True, samesite="strict", secure=session.cookies_secure(request),
                                path="/auth/")
            return response
        return render(request, "auth/login.html", status=error.status, next=next_url or "", email=email,
                      error=error.detail, headers=error.headers)
    return _after_sign_in(request, pair, next_url)


@router.get("/auth/mfa")
async def mfa_page(request: Request, next: str | None = None):
    if not request.cookies.get(MFA_COOKIE):
        return redirect(request, session.login_url(next or "/admin"), flash="Your sign-in expired; start again.")
    return render(request, "auth/mfa.html", next=_safe_next(next) if next else "", error=None)


@router.post("/auth/mfa")
async def mfa_submit(request: Request):
    form = await form_data(request)
    next_url = _safe_next(form.text("next")) if form.text("next") else None
    try:
        pair = await service.finish_mfa_challenge(request.cookies.get(MFA_COOKIE) or "", form.text("otp"))
    except AppError as error:
        if error.code == "invalid_mfa_token":
            return redirect(request, session.login_url(next_url or "/admin"), flash=error.detail)
        return render(request, "auth/mfa.html", status=error.status, next=next_url or "", error=error.detail,
                      headers=error.headers)
    return _after_sign_in(request, pair, next_url)


@router.get("/auth/password")
async def password_page(request: Request, next: str | None = None,
                        principal: Principal = Depends(session.any_user)):
    return render(request, "auth/password.html", next=_safe_next(next) if next else "", errors={},
                  forced=principal.restrict == "password_change")


@router.post("/auth/password")
async def password_submit(request: Request, principal: Principal = Depends(session.any_user)):
    form = await form_data(request)
    next_url = _safe_next(form.text("next")) if form.text("next") else None
    current, new, again = (form.text(name, strip=False) for name in ("current_password", "new_password",
                                                                      "confirm_password"))
    forced = principal.restrict == "password_change"
    errors: dict[str, str] = {}
    if principal.restrict not in (None, "password_change"):
        return redirect(request, "/auth/mfa/setup")
    if new != again:
        errors["confirm_password"] = "The two new passwords differ."
    else:
        try:
            async with tenant_transaction(principal.db_context()) as db:
                await service.change_password(db, principal.user_id, current, new)
        except AppError as error:
            errors[error.extra.get("field", "new_password")] = error.detail
    if errors:
        return render(request, "auth/password.html", status=422, next=next_url or "", errors=errors, forced=forced)
    await state.forget_user(principal.user_id)
    # Every earlier token ended with the change: sign in again with the new password (TOTP asks for a code).
    try:
        pair = await service.login(principal.email, new, challenge=True)
    except AppError:
        response = redirect(request, session.login_url(next_url or "/auth/home"),
                            flash="Password changed. Sign in with your new password.")
        session.clear_session(response)
        return response
    response = _after_sign_in(request, pair, next_url)
    session.set_flash(request, response, "Password changed.")
    return response


@router.get("/auth/mfa/setup")
async def mfa_setup_page(request: Request, next: str | None = None, principal: Principal = Depends(session.any_user)):
    return render(request, "auth/mfa_setup.html", next=_safe_next(next) if next else "", enrolment=None,
                  qr=None, error=None, required=principal.restrict == "mfa_enrollment")


def _qr_svg(uri: str) -> str:
    import segno

    return segno.make(uri, error="m").svg_inline(scale=4, dark="#111", omitsize=False)


@router.post("/auth/mfa/setup")
async def mfa_setup_start(request: Request, principal: Principal = Depends(session.any_user)):
    form = await form_data(request)
    next_url = _safe_next(form.text("next")) if form.text("next") else ""
    if principal.restrict not in (None, "mfa_enrollment"):
        return redirect(request, "/auth/password")
    try:
        async with tenant_transaction(principal.db_context()) as db:
            enrolment = await mfa.begin_enrolment(db, principal.user_id)
    except AppError as error:
        return redirect(request, _safe_next(next_url, principal), flash=error.detail)
    return render(request, "auth/mfa_setup.html", next=next_url, enrolment=enrolment, qr=_qr_svg(enrolment["otpauth_uri"]),
                  error=None, required=principal.restrict == "mfa_enrollment")


@router.post("/auth/mfa/confirm")
async def mfa_confirm(request: Request, principal: Principal = Depends(session.any_user)):
    form = await form_data(request)
    next_url = _safe_next(form.text("next")) if form.text("next") else ""
    try:
        async with tenant_transaction(principal.db_context()) as db:
            result = await service.enable_totp(db, principal.user_id, form.text("otp"))
    except AppError as error:
        return render(request, "auth/mfa_setup.html", status=error.status, next=next_url,
                      enrolment={"secret": form.text("secret"), "otpauth_uri": form.text("otpauth_uri")},
                      qr=_qr_svg(form.text("otpauth_uri")) if form.text("otpauth_uri").startswith("otpauth://") else None,
                      error=error.detail, required=principal.restrict == "mfa_enrollment")
    await state.forget_user(principal.user_id)
    response = render(request, "auth/recovery_codes.html", codes=result["recovery_codes"],
                      next=next_url or "/auth/home")
    session.set_session(request, response, result)
    return response


@router.post("/auth/logout")
async def logout(request: Request):
    principal = await session.signed_in(request)
    if principal is not None:
        async with tenant_transaction(principal.db_context()) as db:
            ended = await service.logout(db, principal.user_id, principal.jti, principal.expires_at,
                                         request.cookies.get(session.REFRESH_COOKIE))
        await service.end_access_tokens(ended)
    elif request.cookies.get(session.REFRESH_COOKIE):  # the access cookie lapsed: end the sign-in by its chain
        await service.end_refresh_chain(request.cookies[session.REFRESH_COOKIE])
    response = redirect(request, "/auth/login", flash="Signed out.")
    session.clear_session(response)
    return response
