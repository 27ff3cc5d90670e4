"""Staff of an organization and their roles.

Rules: nobody grants a role above their own, nor changes someone ranked above them (403
`role_too_high`); an organization always keeps at least one active super-admin (409
`last_super_admin`); the plan's `max_staff` bounds the active staff (403 `plan_limit_reached`);
emails are unique platform-wide (409 `email_taken`). A deactivated user's tokens are revoked in
the same transaction; the caller forgets the cached auth state after commit (`auth.state`).

Every change takes a per-organization lock first, so concurrent changes (two super-admins demoting
each other, two invites for the last seat) are decided one after the other."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.audit.service import diff, record
from bookingtms.auth.passwords import hash_password, temporary_password
from bookingtms.auth.permissions import PERMISSION_MATRIX, ROLE_RANK
from bookingtms.auth.service import revoke_all_tokens
from bookingtms.config import get_settings
from bookingtms.errors import Conflict, Forbidden, NotFound
from bookingtms.http.pagination import keyset, page
from bookingtms.models import organizations, users
from bookingtms.notifications import service as notifications
from bookingtms.platform.limits import check_limit
from bookingtms.users.schemas import UserInvite, UserUpdate

PUBLIC_COLUMNS = ("id", "organization_id", "email", "full_name", "role", "is_active", "must_change_password",
                  "last_login_at", "invited_by", "deactivated_at", "created_at", "updated_at")
AUDITED = ("role", "full_name", "is_active")


def actor_rank(role: str, permissions: frozenset[str]) -> int:
    """A member's rank is their role's. A caller without an organization role (an API key, a
    platform admin under an access grant) ranks as the lowest role that holds all its permissions."""
    if role in ROLE_RANK:
        return ROLE_RANK[role]
    return max((ROLE_RANK[PERMISSION_MATRIX[p]] for p in permissions if p in PERMISSION_MATRIX), default=0)


def _public(row) -> dict[str, Any]:
    m = row._mapping
    return {**{k: m[k] for k in PUBLIC_COLUMNS}, "mfa_enabled": m["totp_enabled"]}


def _role_too_high(detail: str) -> Forbidden:
    return Forbidden(detail, code="role_too_high")


async def _lock_staff(db: AsyncConnection, org_id: uuid.UUID) -> None:
    await db.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"staff:{org_id}"})


async def _user_row(db: AsyncConnection, org_id: uuid.UUID, user_id: uuid.UUID):
    row = (await db.execute(select(users).where(users.c.organization_id == org_id, users.c.id == user_id))).first()
    if row is None:
        raise NotFound("No such user.", code="user_not_found")
    return row


async def list_users(db: AsyncConnection, org_id: uuid.UUID, *, role: str | None, active: bool | None, limit: int,
                     after: list | None) -> dict[str, Any]:
    u = users.c
    query = select(users).where(u.organization_id == org_id)
    if role:
        query = query.where(u.role == role)
    if active is not None:
        query = query.where(u.is_active == active)
    if (key := keyset(after)):
        query = query.where(func.row(u.email, u.id) > func.row(*key))
    rows = (await db.execute(query.order_by(u.email, u.id).limit(limit + 1))).all()
    return page([_public(r) for r in rows], limit, lambda r: (r["email"], str(r["id"])))


async def get_user(db: AsyncConnection, org_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    return _public(await _user_row(db, org_id, user_id))


async def invite(db: AsyncConnection, org_id: uuid.UUID, inviter_id: uuid.UUID | None, inviter_rank: int,
                 data: UserInvite) -> dict[str, Any]:
    """A new staff member with a temporary password, sent through the outbox (`staff_invite`);
    they must change it at first sign-in."""
    if ROLE_RANK[data.role] > inviter_rank:
        raise _role_too_high(f"You cannot give the role '{data.role}': it is above your own.")
    await _lock_staff(db, org_id)
    await check_limit(db, org_id, "staff")
    password = temporary_password()
    row = (await db.execute(
        pg_insert(users).values(organization_id=org_id, email=data.email, full_name=data.full_name, role=data.role,
                                password_hash=hash_password(password), must_change_password=True,
                                invited_by=inviter_id)
        .on_conflict_do_nothing(index_elements=["email"]).returning(users))).first()
    if row is None:
        raise Conflict(f"A user with email {data.email} already exists.", code="email_taken", field="email")
    organization = (await db.execute(select(organizations.c.name).where(organizations.c.id == org_id))).scalar_one()
    await notifications.enqueue(db, org_id, "staff_invite", row.email, {
        "organization": organization, "full_name": row.full_name, "email": row.email, "role": row.role,
        "temporary_password": password, "login_url": f"{get_settings().base_url}/admin"})
    user = _public(row)
    await record(db, "user.invited", organization_id=org_id, target_type="user", target_id=row.id,
                 changes=diff({}, {"email": row.email, **{k: user[k] for k in AUDITED}}))
    return user


async def update_user(db: AsyncConnection, org_id: uuid.UUID, actor_rank_: int, user_id: uuid.UUID,
                      data: UserUpdate) -> tuple[dict[str, Any], bool]:
    """Changes role, name or activity. Returns the user and whether their sign-in state changed
    (then the caller must call auth.state.forget_user after commit)."""
    await _lock_staff(db, org_id)
    target = await _user_row(db, org_id, user_id)
    if ROLE_RANK[target.role] > actor_rank_:
        raise _role_too_high(f"This user is a {target.role}, which ranks above you; you cannot change them.")
    wanted = data.model_dump(exclude_unset=True)
    if "role" in wanted and ROLE_RANK[wanted["role"]] > actor_rank_:
        raise _role_too_high(f"You cannot give the role '{wanted['role']}': it is above your own.")
    values = {k: v for k, v in wanted.items() if v != target._mapping[k]}
    if not values:
        return _public(target), False
    new_role, new_active = values.get("role", target.role), values.get("is_active", target.is_active)
    if target.role == "super-admin" and target.is_active and (new_role != "super-admin" or not new_active):
        others = (await db.execute(select(func.count()).select_from(users).where(
            users.c.organization_id == org_id, users.c.role == "super-admin", users.c.is_active,
            users.c.id != user_id))).scalar_one()
        if others == 0:
            raise Conflict("This is the organization's last active super-admin; make someone else super-admin first.",
                           code="last_super_admin")
    if "is_active" in values:
        if new_active:
            await check_limit(db, org_id, "staff")
        values["deactivated_at"] = None if new_active else func.now()
    row = (await db.execute(update(users).where(users.c.organization_id == org_id, users.c.id == user_id)
                            .values(**values).returning(users))).one()
    if "is_active" in values and not new_active:
        await revoke_all_tokens(db, user_id)
    user = _public(row)
    action = ("user.deactivated" if "is_active" in values and not new_active
              else "user.reactivated" if "is_active" in values else "user.updated")
    await record(db, action, organization_id=org_id, target_type="user", target_id=user_id,
                 changes=diff({k: target._mapping[k] for k in AUDITED}, {k: user[k] for k in AUDITED}))
    return user, "role" in values or "is_active" in values
