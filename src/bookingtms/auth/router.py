import uuid

import jwt
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse

from bookingtms.auth import mfa, oidc, service, state
from bookingtms.auth.schemas import (LoginIn, LogoutIn, MfaVerifyIn, PasswordChangeIn, PasswordResetConfirmIn,
                                     PasswordResetRequestIn, RefreshIn, TotpConfirmIn, TotpDisableIn)
from bookingtms.auth.tokens import decode_access_token
from bookingtms.db.engine import tenant_transaction
from bookingtms.errors import Forbidden
from bookingtms.http import request_context
from bookingtms.http.principal import Principal, authenticate

router = APIRouter(prefix="/v1", tags=["auth"])


def signed_in_user(step: str | None = None):
    """Dependency: a signed-in user (not an API key) whose token is unrestricted or restricted to
    `step` (a temporary-password token may only change the password, an MFA-enrolment token may only
    enrol)."""

    async def check(p: Principal = Depends(authenticate)) -> Principal:
        if p.restrict and p.restrict != step:
            raise Forbidden(f"Finish the {p.restrict.replace('_', ' ')} first.", code=f"{p.restrict}_required")
        if p.user_id is None:
            raise Forbidden("Only a signed-in user can do this, not an API key.", code="permission_denied")
        return p

    return check


def _family_of(request: Request) -> uuid.UUID | None:
    """The sign-in (refresh-token family) of the bearer token, already verified by authenticate."""
    _, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        fid = decode_access_token(token.strip()).get("fid")
        return uuid.UUID(fid) if fid else None
    except (jwt.InvalidTokenError, ValueError, TypeError):
        return None


@router.post("/auth/login")
async def login(body: LoginIn):
    return await service.login(body.email, body.password, body.otp)


@router.post("/auth/refresh")
async def refresh(body: RefreshIn):
    return await service.refresh(body.refresh_token)


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, body: LogoutIn | None = None, p: Principal = Depends(authenticate)):
    if p.user_id is not None:
        async with tenant_transaction(p.db_context()) as db:
            ended = await service.logout(db, p.user_id, p.jti, p.expires_at, body.refresh_token if body else None,
                                         _family_of(request))
        await service.end_access_tokens(ended)
    return Response(status_code=204)


@router.post("/auth/password", status_code=204)
async def change_password(body: PasswordChangeIn, p: Principal = Depends(signed_in_user("password_change"))):
    async with tenant_transaction(p.db_context()) as db:
        await service.change_password(db, p.user_id, body.current_password, body.new_password)
    await state.forget_user(p.user_id)
    return Response(status_code=204)


@router.post("/auth/password-reset", status_code=202)
async def request_password_reset(body: PasswordResetRequestIn):
    await service.request_reset(body.email)
    return {"status": "If the account exists, a reset link has been sent."}


@router.post("/auth/password-reset/confirm", status_code=204)
async def confirm_password_reset(body: PasswordResetConfirmIn):
    await service.confirm_reset(body.token, body.new_password)
    return Response(status_code=204)


@router.post("/auth/mfa/totp", status_code=201)
async def enrol_totp(p: Principal = Depends(signed_in_user("mfa_enrollment"))):
    """A new TOTP secret (and its otpauth:// URI for a QR code); not in force until confirmed."""
    async with tenant_transaction(p.db_context()) as db:
        return await mfa.begin_enrolment(db, p.user_id)


@router.post("/auth/mfa/totp/confirm")
async def confirm_totp(body: TotpConfirmIn, p: Principal = Depends(signed_in_user("mfa_enrollment"))):
    """Turns TOTP on. Answers the 10 recovery codes (shown only now) and a new token pair: every
    earlier token of the user stops working."""
    async with tenant_transaction(p.db_context()) as db:
        result = await service.enable_totp(db, p.user_id, body.otp)
    await state.forget_user(p.user_id)
    return result


@router.post("/auth/mfa/totp/disable", status_code=204)
async def disable_totp(body: TotpDisableIn, p: Principal = Depends(signed_in_user())):
    async with tenant_transaction(p.db_context()) as db:
        await mfa.disable(db, p.user_id, body.otp)
    return Response(status_code=204)


@router.post("/auth/mfa/verify")
async def verify_mfa(body: MfaVerifyIn):
    """The second step of a single sign-on for an account with TOTP on: the `mfa_token` of the
    401 `mfa_required` answer, and a code."""
    return await service.finish_mfa_challenge(body.mfa_token, body.otp)


@router.get("/auth/oidc/login", status_code=302, response_class=RedirectResponse,
            responses={302: {"description": "To the sign-in provider"}})
async def oidc_login(request: Request):
    """Sign in with Google: redirects the browser to the provider."""
    url, binding = await oidc.begin()
    response = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    response.set_cookie(oidc.BROWSER_COOKIE, binding, max_age=oidc.ATTEMPT_TTL_SECONDS, path=oidc.COOKIE_PATH,
                        httponly=True, samesite="lax", secure=request_context.cookies_secure(request.url.scheme))
    return response


@router.get("/auth/oidc/callback")
async def oidc_callback(request: Request, response: Response, code: str | None = Query(None, max_length=2048),
                        state_: str | None = Query(None, alias="state", max_length=512),
                        error: str | None = Query(None, max_length=256)):
    """Where the provider sends the browser back; answers the same token pair as /auth/login."""
    claims = await oidc.complete(code, state_, error, request.cookies.get(oidc.BROWSER_COOKIE))
    pair = await service.sign_in_linked(claims["sub"], claims["email"], "oidc")
    response.delete_cookie(oidc.BROWSER_COOKIE, path=oidc.COOKIE_PATH)
    response.headers["Cache-Control"] = "no-store"
    return pair


@router.get("/me")
async def me(p: Principal = Depends(authenticate)):
    if p.user_id is None:
        # API.md's fields for a user, as a key has them: no email; its name stands for the full name.
        return {"id": p.api_key_id, "kind": "api_key", "email": None, "full_name": p.api_key_name, "role": p.role,
                "organization_id": p.organization_id, "permissions": sorted(p.permissions)}
    async with tenant_transaction(p.db_context()) as db:
        return await service.me(db, p.user_id) | {"restricted_to": p.restrict}
