"""Signing in, token pairs, rotation, logout, password change and reset."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.audit.service import record, record_alone
from bookingtms.auth import state
from bookingtms.auth.passwords import hash_password, password_problems, verify_password
from bookingtms.auth.permissions import permissions_for
from bookingtms.auth.tokens import REFRESH_TTL_SECONDS, hash_opaque, issue_access_token, new_opaque_token
from bookingtms.config import get_settings
from bookingtms.db.engine import DbContext, get_engine, tenant_transaction
from bookingtms.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from bookingtms.http import request_context
from bookingtms.models import password_resets, platform_team, refresh_tokens, users
from bookingtms.notifications import service as notifications

RESET_TTL = timedelta(hours=1)


def _context_for(user) -> DbContext:
    return DbContext(organization_id=user.organization_id, user_id=user.id, is_platform=user.is_platform_team)


async def _issue_pair(db: AsyncConnection, user, family_id: uuid.UUID | None = None,
                      restrict: str | None = None) -> dict[str, Any]:
    """An access token and a refresh token (a new family at sign-in, the same on rotation)."""
    refresh, refresh_hash = new_opaque_token()
    info = request_context.current()
    await db.execute(insert(refresh_tokens).values(
        user_id=user.id, family_id=family_id or uuid.uuid4(), token_hash=refresh_hash, token_version=user.token_version,
        expires_at=func.now() + timedelta(seconds=REFRESH_TTL_SECONDS), ip=info.ip, user_agent=info.user_agent))
    access, ttl = issue_access_token(
        user_id=user.id, email=user.email, role=user.role, organization_id=user.organization_id,
        is_platform=user.is_platform_team, permissions=permissions_for(user.role), token_version=user.token_version,
        restrict=restrict)
    return {"access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": ttl,
            "must_change_password": user.must_change_password}


def _restriction(user) -> str | None:
    return "password_change" if user.must_change_password else None


async def _find_user(email: str):
    async with get_engine().connect() as conn:
        return (await conn.execute(text("SELECT * FROM find_login_user(:e)"), {"e": email.strip()})).first()


async def login(email: str, password: str, otp: str | None = None) -> dict[str, Any]:
    found = await _find_user(email)
    ctx = DbContext(organization_id=found.organization_id if found else None, user_id=found.user_id if found else None,
                    is_platform=found is not None and found.organization_id is None)
    async with tenant_transaction(ctx) as db:
        user = None
        if found:
            user = (await db.execute(select(users).where(users.c.id == found.user_id))).first()
        ok = verify_password(user.password_hash if user else None, password)  # same work either way
        if ok and user.is_active:
            request_context.set_actor(str(user.id), "platform" if user.is_platform_team else "user", user.email)
            await db.execute(update(users).where(users.c.id == user.id).values(last_login_at=func.now()))
            await record(db, "auth.login", organization_id=user.organization_id, target_type="user", target_id=user.id)
            return await _issue_pair(db, user, restrict=_restriction(user))
    await record_alone("auth.login_failed", organization_id=found.organization_id if found else None,
                       target_type="user", target_id=found.user_id if found else None,
                       changes={"email": email.strip().lower()[:320]})
    raise Unauthorized("Wrong email or password.", code="invalid_credentials")


async def refresh(token: str) -> dict[str, Any]:
    """Rotates a refresh token. A token presented twice means it was stolen or replayed: the
    whole chain it belongs to is revoked, for both holders."""
    token_hash = hash_opaque(token)
    async with get_engine().connect() as conn:
        ref = (await conn.execute(text("SELECT * FROM find_refresh_token(:h)"), {"h": token_hash})).first()
    if ref is None:
        raise Unauthorized("Unknown refresh token.", code="invalid_refresh_token")
    reused = False
    async with tenant_transaction(DbContext(organization_id=ref.organization_id, user_id=ref.user_id,
                                            is_platform=ref.organization_id is None)) as db:
        t = refresh_tokens.c
        row = (await db.execute(select(refresh_tokens, (t.expires_at <= func.now()).label("lapsed"))
                                .where(t.id == ref.token_id).with_for_update())).one()
        user = (await db.execute(select(users).where(users.c.id == ref.user_id))).one()
        if row.used_at is not None and row.revoked_at is None:
            reused = True
            await db.execute(update(refresh_tokens).where(t.family_id == row.family_id, t.revoked_at.is_(None))
                             .values(revoked_at=func.now()))
            request_context.set_actor(str(user.id), "user", user.email)
            await record(db, "auth.refresh_reused", organization_id=user.organization_id, target_type="user",
                         target_id=user.id, changes={"family_id": str(row.family_id)})
        elif (row.revoked_at is None and not row.lapsed and user.is_active
              and row.token_version == user.token_version):
            await db.execute(update(refresh_tokens).where(t.id == row.id).values(used_at=func.now()))
            return await _issue_pair(db, user, family_id=row.family_id, restrict=_restriction(user))
    if reused:
        raise Unauthorized("This refresh token was already used; every session of that sign-in is now ended.",
                           code="refresh_token_reused")
    raise Unauthorized("This refresh token has expired or been revoked.", code="invalid_refresh_token")


async def logout(db: AsyncConnection, user_id: uuid.UUID, jti: str | None, expires_at: int | None,
                 refresh_token: str | None) -> None:
    """Ends this sign-in: the refresh token's chain is revoked and this access token stops now."""
    t = refresh_tokens.c
    if refresh_token:
        family = (await db.execute(select(t.family_id).where(t.token_hash == hash_opaque(refresh_token),
                                                             t.user_id == user_id))).scalar_one_or_none()
        if family is not None:
            await db.execute(update(refresh_tokens).where(t.family_id == family, t.revoked_at.is_(None))
                             .values(revoked_at=func.now()))
    if jti and expires_at:
        await state.revoke_access_token(jti, expires_at)


async def revoke_all_tokens(db: AsyncConnection, user_id: uuid.UUID) -> None:
    """Every earlier access and refresh token of the user stops working (call forget_user after
    commit so cached state follows at once)."""
    await db.execute(update(users).where(users.c.id == user_id).values(token_version=users.c.token_version + 1))
    await db.execute(update(refresh_tokens).where(refresh_tokens.c.user_id == user_id,
                                                  refresh_tokens.c.revoked_at.is_(None)).values(revoked_at=func.now()))


async def change_password(db: AsyncConnection, user_id: uuid.UUID, current: str, new: str) -> None:
    user = (await db.execute(select(users).where(users.c.id == user_id).with_for_update())).one()
    if not verify_password(user.password_hash, current):
        raise ValidationFailed("The current password is wrong.", code="invalid_credentials", field="current_password")
    check_password_policy(new, "new_password")
    if verify_password(user.password_hash, new):
        raise ValidationFailed("The new password must differ from the current one.", code="password_reused",
                               field="new_password")
    await db.execute(update(users).where(users.c.id == user_id).values(
        password_hash=hash_password(new), must_change_password=False))
    await revoke_all_tokens(db, user_id)
    await record(db, "auth.password_changed", organization_id=user.organization_id, target_type="user",
                 target_id=user_id)


async def request_reset(email: str) -> None:
    """Always answers alike; if the account exists, a single-use link goes out by email."""
    found = await _find_user(email)
    if found is None:
        return
    token, token_hash = new_opaque_token()
    async with tenant_transaction(DbContext(organization_id=found.organization_id, user_id=found.user_id,
                                            is_platform=found.organization_id is None)) as db:
        user = (await db.execute(select(users).where(users.c.id == found.user_id))).one()
        if not user.is_active:
            return
        await db.execute(insert(password_resets).values(user_id=user.id, token_hash=token_hash,
                                                        expires_at=func.now() + RESET_TTL))
        link = f"{get_settings().base_url}/reset-password?token={token}"
        if user.organization_id is not None:  # the outbox belongs to an organization
            await notifications.enqueue(db, user.organization_id, "password_reset", user.email,
                                        {"full_name": user.full_name, "reset_url": link})
        await record(db, "auth.password_reset_requested", organization_id=user.organization_id,
                     target_type="user", target_id=user.id)


async def confirm_reset(token: str, new_password: str) -> None:
    check_password_policy(new_password, "new_password")
    async with get_engine().connect() as conn:
        ref = (await conn.execute(text("SELECT * FROM find_password_reset(:h)"), {"h": hash_opaque(token)})).first()
    if ref is None:
        raise ValidationFailed("This reset link is not valid.", code="invalid_reset_token", field="token")
    async with tenant_transaction(DbContext(organization_id=ref.organization_id, user_id=ref.user_id,
                                            is_platform=ref.organization_id is None)) as db:
        r = password_resets.c
        used = (await db.execute(update(password_resets).where(
            r.id == ref.reset_id, r.used_at.is_(None), r.expires_at > func.now()).values(used_at=func.now())
            .returning(r.id))).first()
        if used is None:
            raise ValidationFailed("This reset link has expired or was already used.", code="invalid_reset_token",
                                   field="token")
        await db.execute(update(users).where(users.c.id == ref.user_id).values(
            password_hash=hash_password(new_password), must_change_password=False))
        await revoke_all_tokens(db, ref.user_id)
        await record(db, "auth.password_reset", organization_id=ref.organization_id, target_type="user",
                     target_id=ref.user_id)
    await state.forget_user(ref.user_id)


async def me(db: AsyncConnection, user_id: uuid.UUID) -> dict[str, Any]:
    user = (await db.execute(select(users).where(users.c.id == user_id))).first()
    if user is None:
        raise NotFound("No such user.")
    return {"id": user.id, "email": user.email, "full_name": user.full_name, "role": user.role,
            "organization_id": user.organization_id, "is_platform": user.is_platform_team,
            "must_change_password": user.must_change_password, "mfa_enabled": user.totp_enabled,
            "permissions": permissions_for(user.role)}


def check_password_policy(password: str, field: str = "password") -> None:
    problems = password_problems(password)
    if problems:
        raise ValidationFailed("The password needs " + ", ".join(problems) + ".", code="weak_password", field=field)


async def create_platform_admin(email: str, password: str, full_name: str = "") -> uuid.UUID:
    """For `bookingtms create-admin`: a system-admin of the platform team."""
    check_password_policy(password)
    async with tenant_transaction(DbContext(is_platform=True)) as db:
        taken = (await db.execute(text("SELECT 1 FROM find_login_user(:e)"), {"e": email})).first()
        if taken:
            raise Conflict(f"A user with email {email} already exists.", code="email_taken")
        user_id = (await db.execute(users.insert().values(
            email=email.lower(), full_name=full_name, role="system-admin", is_platform_team=True,
            password_hash=hash_password(password)).returning(users.c.id))).scalar_one()
        await db.execute(platform_team.insert().values(user_id=user_id, role="system-admin"))
        await record(db, "platform.admin_created", organization_id=None, target_type="user", target_id=user_id)
    return user_id
