from fastapi import APIRouter, Depends, Response

from bookingtms.auth import service, state
from bookingtms.auth.schemas import (LoginIn, LogoutIn, PasswordChangeIn, PasswordResetConfirmIn,
                                     PasswordResetRequestIn, RefreshIn)
from bookingtms.db.engine import tenant_transaction
from bookingtms.errors import Forbidden
from bookingtms.http.principal import Principal, authenticate

router = APIRouter(prefix="/v1", tags=["auth"])


@router.post("/auth/login")
async def login(body: LoginIn):
    return await service.login(body.email, body.password, body.otp)


@router.post("/auth/refresh")
async def refresh(body: RefreshIn):
    return await service.refresh(body.refresh_token)


@router.post("/auth/logout", status_code=204)
async def logout(body: LogoutIn | None = None, p: Principal = Depends(authenticate)):
    if p.user_id is not None:
        async with tenant_transaction(p.db_context()) as db:
            await service.logout(db, p.user_id, p.jti, p.expires_at, body.refresh_token if body else None)
    return Response(status_code=204)


@router.post("/auth/password", status_code=204)
async def change_password(body: PasswordChangeIn, p: Principal = Depends(authenticate)):
    if p.user_id is None:
        raise Forbidden("API keys have no password.", code="permission_denied")
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


@router.get("/me")
async def me(p: Principal = Depends(authenticate)):
    if p.user_id is None:
        return {"id": p.api_key_id, "kind": "api_key", "role": p.role, "organization_id": p.organization_id,
                "permissions": sorted(p.permissions)}
    async with tenant_transaction(p.db_context()) as db:
        return await service.me(db, p.user_id)
