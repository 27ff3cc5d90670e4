"""Signing in (password, single sign-on, the second factor), token pairs, rotation, logout,
password change and reset.

The same rules follow every first factor: an account with TOTP on needs a code (or a recovery
code) too; a pending temporary-password change limits the token to `password_change`; then, if the
organization requires MFA for the user's role and the user has not enrolled, to `mfa_enrollment`
(http/principal.py refuses restricted tokens everywhere but the endpoints that finish that step).
Failed attempts are throttled (auth/throttle.py) and audited."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.audit.service import record, record_alone
from bookingtms.auth import mfa, state, throttle
from bookingtms.auth.passwords import hash_password_async, password_problems, verify_password_async
from bookingtms.auth.permissions import permissions_for
from bookingtms.auth.tokens import REFRESH_TTL_SECONDS, hash_opaque, issue_access_token, new_opaque_token
from bookingtms.config import get_settings
from bookingtms.db.engine import DbContext, lookup_connection, tenant_transaction
from bookingtms.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from bookingtms.http import request_context
from bookingtms.models import password_resets, platform_team, refresh_tokens, users
from bookingtms.notifications import service as notifications
from bookingtms.organizations import service as organizations

RESET_TTL = timedelta(hours=1)
MFA_TICKET_TTL_SECONDS = 300


def _ctx(user_id: uuid.UUID | None, organization_id: uuid.UUID | None) -> DbContext:
    return DbContext(organization_id=organization_id, user_id=user_id,
                     is_platform=user_id is not None and organization_id is None)


async def _issue_pair(db: AsyncConnection, user, family_id: uuid.UUID | None = None,
                      restrict: str | None = None) -> dict[str, Any]:
    """An access token and a refresh token (a new family at sign-in, the same on rotation)."""
    family_id = family_id or uuid.uuid4()
    refresh, refresh_hash = new_opaque_token()
    info = request_context.current()
    await db.execute(insert(refresh_tokens).values(
        user_id=user.id, family_id=family_id, token_hash=refresh_hash, token_version=user.token_version,
        expires_at=func.now() + timedelta(seconds=REFRESH_TTL_SECONDS), ip=info.ip, user_agent=info.user_agent))
    jti = uuid.uuid4().hex
    access, ttl = issue_access_token(
        user_id=user.id, email=user.email, role=user.role, organization_id=user.organization_id,
        is_platform=user.is_platform_team, permissions=permissions_for(user.role), token_version=user.token_version,
        restrict=restrict, family_id=family_id, jti=jti)
    await state.remember_family_token(family_id, jti, int(time.time()) + ttl)
    return {"access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": ttl,
            "must_change_password": user.must_change_password,
            "mfa_enrollment_required": restrict == "mfa_enrollment"}


async def _restriction(db: AsyncConnection, user) -> str | None:
    """What a new token is limited to: finishing a password change (a temporary password), then
    enrolling in MFA (the organization requires it for the user's role)."""
    if user.must_change_password:
        return "password_change"
    if (not user.totp_enabled and user.organization_id is not None
            and user.role in await organizations.mfa_required_roles(db, user.organization_id)):
        return "mfa_enrollment"
    return None


async def _find_user(email: str):
    async with lookup_connection() as conn:
        return (await conn.execute(text("SELECT * FROM find_login_user(:e)"), {"e": email.strip()})).first()


async def _signed_in(db: AsyncConnection, user, method: str, second_factor: str | None) -> dict[str, Any]:
    """Both factors are good: audit the sign-in and hand out a new token pair."""
    request_context.set_actor(str(user.id), "platform" if user.is_platform_team else "user", user.email)
    await db.execute(update(users).where(users.c.id == user.id).values(last_login_at=func.now()))
    restrict = await _restriction(db, user)
    await record(db, "auth.login", organization_id=user.organization_id, target_type="user", target_id=user.id,
                 changes={"method": method, "second_factor": second_factor, "restricted_to": restrict})
    return await _issue_pair(db, user, restrict=restrict)


async def _failed(email: str, organization_id: uuid.UUID | None, user_id: uuid.UUID | None, reason: str,
                  method: str = "password") -> None:
    """Counts a failed attempt against the account and the address, and audits it."""
    await throttle.record_failure(email, request_context.current().ip)
    await record_alone("auth.login_failed", organization_id=organization_id, target_type="user", target_id=user_id,
                       changes={"email": email[:320], "reason": reason, "method": method})


def _mfa_required(ticket: str | None = None) -> Unauthorized:
    extra = {"mfa_token": ticket, "mfa_token_expires_in": MFA_TICKET_TTL_SECONDS} if ticket else {}
    how = ("POST it with this mfa_token to /v1/auth/mfa/verify" if ticket
           else "send it as `otp` with the email and password")
    return Unauthorized(f"This account uses two-step verification: {how} (the 6-digit code from the "
                        "authenticator app, or a recovery code).", code="mfa_required", **extra)


def _invalid_otp() -> Unauthorized:
    return Unauthorized("The verification code is wrong or was already used.", code="invalid_otp")


async def login(email: str, password: str, otp: str | None = None, *, challenge: bool = False) -> dict[str, Any]:
    """`challenge`: an account with TOTP on and no `otp` gets an mfa_token (as after single sign-on)
    to finish at finish_mfa_challenge, so a sign-in page never has to carry the password forward."""
    email = email.strip().lower()
    ip = request_context.current().ip
    try:
        await throttle.check(email, ip)  # before any password hash is computed
    except throttle.TooManyAttempts:
        found = await _find_user(email)
        await record_alone("auth.login_throttled", organization_id=found.organization_id if found else None,
                           target_type="user", target_id=found.user_id if found else None,
                           changes={"email": email[:320], "method": "password"})
        raise
    found = await _find_user(email)
    failure = "invalid_credentials"
    ctx = _ctx(found.user_id if found else None, found.organization_id if found else None)
    user = None
    if found:
        async with tenant_transaction(ctx) as db:
            user = (await db.execute(select(users).where(users.c.id == found.user_id))).first()
    # Hashed off the event loop and outside any transaction; the same work whether or not the
    # account exists.
    if await verify_password_async(user.password_hash if user else None, password) and user.is_active:
        async with tenant_transaction(ctx) as db:
            user = (await db.execute(select(users).where(users.c.id == found.user_id))).one()
            second_factor = None
            if user.totp_enabled:
                if not otp:
                    raise _mfa_required(await start_mfa_challenge(user, "password") if challenge else None)  # the password was right: not counted as a failure
                second_factor = await mfa.verify_second_factor(db, user, otp)
            if second_factor is not None or not user.totp_enabled:
                pair = await _signed_in(db, user, "password", second_factor)
                await throttle.record_success(email)
                return pair
            failure = "invalid_otp"
    await _failed(email, found.organization_id if found else None, found.user_id if found else None, failure)
    if failure == "invalid_otp":
        raise _invalid_otp()
    raise Unauthorized("Wrong email or password.", code="invalid_credentials")


async def start_mfa_challenge(user, method: str) -> str:
    """After a first factor other than the password (single sign-on): a short-lived, single-use
    ticket to finish with the second factor at /v1/auth/mfa/verify."""
    ticket, ticket_hash = new_opaque_token()
    await state.put_mfa_ticket(ticket_hash, {
        "user_id": str(user.id), "organization_id": str(user.organization_id) if user.organization_id else None,
        "email": user.email, "method": method}, MFA_TICKET_TTL_SECONDS)
    return ticket


async def finish_mfa_challenge(ticket: str, otp: str) -> dict[str, Any]:
    """The second factor of a sign-in started elsewhere (see start_mfa_challenge). Wrong codes
    count against the account like wrong passwords."""
    ticket_hash = hash_opaque(ticket)
    pending = await state.get_mfa_ticket(ticket_hash)
    if pending is None:
        raise Unauthorized("This sign-in has expired or was already finished; start again.",
                           code="invalid_mfa_token")
    user_id, email = uuid.UUID(pending["user_id"]), pending["email"]
    org_id = uuid.UUID(pending["organization_id"]) if pending["organization_id"] else None
    await throttle.check(email, request_context.current().ip)
    async with tenant_transaction(_ctx(user_id, org_id)) as db:
        user = (await db.execute(select(users).where(users.c.id == user_id).with_for_update())).one()
        if user.is_active and user.totp_enabled:
            second_factor = await mfa.verify_second_factor(db, user, otp)
            if second_factor is not None and await state.drop_mfa_ticket(ticket_hash):
                pair = await _signed_in(db, user, pending["method"], second_factor)
                await throttle.record_success(email)
                return pair
    await _failed(email, org_id, user_id, "invalid_otp", method=pending["method"])
    raise _invalid_otp()


async def enable_totp(db: AsyncConnection, user_id: uuid.UUID, otp: str) -> dict[str, Any]:
    """Confirms TOTP enrolment. Every earlier token of the user ends (sessions begun without the
    second factor); the caller gets a new pair along with the recovery codes. Call
    state.forget_user after commit."""
    codes = await mfa.confirm_enrolment(db, user_id, otp)
    await revoke_all_tokens(db, user_id)
    user = (await db.execute(select(users).where(users.c.id == user_id))).one()
    pair = await _issue_pair(db, user, restrict=await _restriction(db, user))
    return {"recovery_codes": codes, **pair}


async def sign_in_linked(subject: str, email: str, method: str) -> dict[str, Any]:
    """Single sign-on: the provider vouched for `subject` and its verified `email`. Only an
    existing, active member of an organization is signed in: the account linked to this subject,
    or else the one with this email (which is then linked to the subject for good). The same rules
    as a password sign-in follow: TOTP if on, a pending password change or MFA enrolment."""
    async with lookup_connection() as conn:
        found = (await conn.execute(text("SELECT * FROM find_oidc_user(:s, :e)"),
                                    {"s": subject, "e": email.strip().lower()})).first()
    not_linked = Unauthorized("No active BookingTMS staff account is linked to this sign-in; ask your "
                              "organization's admin to invite this email address.", code="sso_not_linked")
    if found is None or found.organization_id is None:  # the platform team signs in with a password
        await record_alone("auth.login_failed", organization_id=None, changes={
            "email": email[:320], "reason": "sso_not_linked", "method": method})
        raise not_linked
    challenge = None
    async with tenant_transaction(_ctx(found.user_id, found.organization_id)) as db:
        user = (await db.execute(select(users).where(users.c.id == found.user_id).with_for_update())).one()
        if user.is_active:
            request_context.set_actor(str(user.id), "user", user.email)
            if user.oidc_subject is None:
                await db.execute(update(users).where(users.c.id == user.id).values(oidc_subject=subject))
                await record(db, "auth.sso_linked", organization_id=user.organization_id, target_type="user",
                             target_id=user.id, changes={"method": method, "email": email})
            if not user.totp_enabled:
                return await _signed_in(db, user, method, None)
            challenge = await start_mfa_challenge(user, method)
    if challenge is not None:  # the link above is kept; the sign-in waits for the second factor
        raise _mfa_required(challenge)
    await record_alone("auth.login_failed", organization_id=found.organization_id, target_type="user",
                       target_id=found.user_id, changes={"email": email[:320], "reason": "inactive", "method": method})
    raise not_linked


async def refresh(token: str) -> dict[str, Any]:
    """Rotates a refresh token. A token presented twice means it was stolen or replayed: the
    whole chain it belongs to is revoked, for both holders, with its live access tokens."""
    token_hash = hash_opaque(token)
    async with lookup_connection() as conn:
        ref = (await conn.execute(text("SELECT * FROM find_refresh_token(:h)"), {"h": token_hash})).first()
    if ref is None:
        raise Unauthorized("Unknown refresh token.", code="invalid_refresh_token")
    reused = None
    async with tenant_transaction(_ctx(ref.user_id, ref.organization_id)) as db:
        t = refresh_tokens.c
        row = (await db.execute(select(refresh_tokens, (t.expires_at <= func.now()).label("lapsed"))
                                .where(t.id == ref.token_id).with_for_update())).one()
        user = (await db.execute(select(users).where(users.c.id == ref.user_id))).one()
        if row.used_at is not None and row.revoked_at is None:
            reused = row.family_id
            await db.execute(update(refresh_tokens).where(t.family_id == row.family_id, t.revoked_at.is_(None))
                             .values(revoked_at=func.now()))
            request_context.set_actor(str(user.id), "user", user.email)
            await record(db, "auth.refresh_reused", organization_id=user.organization_id, target_type="user",
                         target_id=user.id, changes={"family_id": str(row.family_id)})
        elif (row.revoked_at is None and not row.lapsed and user.is_active
              and row.token_version == user.token_version):
            await db.execute(update(refresh_tokens).where(t.id == row.id).values(used_at=func.now()))
            return await _issue_pair(db, user, family_id=row.family_id, restrict=await _restriction(db, user))
    if reused is not None:
        await state.revoke_family_access_tokens(reused)
        raise Unauthorized("This refresh token was already used; every session of that sign-in is now ended.",
                           code="refresh_token_reused")
    raise Unauthorized("This refresh token has expired or been revoked.", code="invalid_refresh_token")


async def logout(db: AsyncConnection, user_id: uuid.UUID, jti: str | None, expires_at: int | None,
                 refresh_token: str | None, family_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Ends this sign-in: its refresh-token chain is revoked and this access token stops now.
    Returns the chains ended; call end_access_tokens with them after commit."""
    t = refresh_tokens.c
    families = {family_id} if family_id else set()
    if refresh_token:
        family = (await db.execute(select(t.family_id).where(t.token_hash == hash_opaque(refresh_token),
                                                             t.user_id == user_id))).scalar_one_or_none()
        if family is not None:
            families.add(family)
    if families:
        await db.execute(update(refresh_tokens).where(t.family_id.in_(families), t.user_id == user_id,
                                                      t.revoked_at.is_(None)).values(revoked_at=func.now()))
    if jti and expires_at:
        await state.revoke_access_token(jti, expires_at)
    return sorted(families)


async def end_refresh_chain(token: str) -> None:
    """Signing out holding only a refresh token (a page whose access token lapsed): its chain ends."""
    async with lookup_connection() as conn:
        ref = (await conn.execute(text("SELECT * FROM find_refresh_token(:h)"), {"h": hash_opaque(token)})).first()
    if ref is None:
        return
    async with tenant_transaction(_ctx(ref.user_id, ref.organization_id)) as db:
        ended = await logout(db, ref.user_id, None, None, token)
    await end_access_tokens(ended)


async def end_access_tokens(families: list[uuid.UUID]) -> None:
    for family in families:
        await state.revoke_family_access_tokens(family)


async def revoke_all_tokens(db: AsyncConnection, user_id: uuid.UUID) -> None:
    """Every earlier access and refresh token of the user stops working (call forget_user after
    commit so cached state follows at once)."""
    await db.execute(update(users).where(users.c.id == user_id).values(token_version=users.c.token_version + 1))
    await db.execute(update(refresh_tokens).where(refresh_tokens.c.user_id == user_id,
                                                  refresh_tokens.c.revoked_at.is_(None)).values(revoked_at=func.now()))


async def change_password(db: AsyncConnection, user_id: uuid.UUID, current: str, new: str) -> None:
    user = (await db.execute(select(users).where(users.c.id == user_id).with_for_update())).one()
    if not await verify_password_async(user.password_hash, current):
        raise ValidationFailed("The current password is wrong.", code="invalid_credentials", field="current_password")
    check_password_policy(new, "new_password")
    if await verify_password_async(user.password_hash, new):
        raise ValidationFailed("The new password must differ from the current one.", code="password_reused",
                               field="new_password")
    await db.execute(update(users).where(users.c.id == user_id).values(
        password_hash=await hash_password_async(new), must_change_password=False))
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
    async with lookup_connection() as conn:
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
        email = (await db.execute(update(users).where(users.c.id == ref.user_id).values(
            password_hash=await hash_password_async(new_password), must_change_password=False).returning(users.c.email))).scalar_one()
        await revoke_all_tokens(db, ref.user_id)
        await record(db, "auth.password_reset", organization_id=ref.organization_id, target_type="user",
                     target_id=ref.user_id)
    await state.forget_user(ref.user_id)
    await throttle.record_success(email)  # whoever can read the mailbox may sign in again now


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
            password_hash=await hash_password_async(password)).returning(users.c.id))).scalar_one()
        await db.execute(platform_team.insert().values(user_id=user_id, role="system-admin"))
        await record(db, "platform.admin_created", organization_id=None, target_type="user", target_id=user_id)
    return user_id
