"""Signing in and identity lookups."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.auth.passwords import hash_password, password_problems, verify_password
from bookingtms.auth.permissions import permissions_for
from bookingtms.auth.tokens import issue_access_token
from bookingtms.db.engine import DbContext, get_engine, tenant_transaction
from bookingtms.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from bookingtms.models import platform_team, users


async def login(email: str, password: str) -> dict[str, Any]:
    async with get_engine().connect() as conn:
        found = (await conn.execute(text("SELECT * FROM find_login_user(:e)"), {"e": email.strip()})).first()
    ctx = DbContext(organization_id=found.organization_id if found else None, user_id=found.user_id if found else None)
    async with tenant_transaction(ctx) as db:
        user = None
        if found:
            user = (await db.execute(select(users).where(users.c.id == found.user_id))).first()
        ok = verify_password(user.password_hash if user else None, password)  # same work either way
        if not ok or not user.is_active:
            raise Unauthorized("Wrong email or password.", code="invalid_credentials")
        await db.execute(update(users).where(users.c.id == user.id).values(last_login_at=func.now()))
    token, ttl = issue_access_token(
        user_id=user.id, email=user.email, role=user.role, organization_id=user.organization_id,
        is_platform=user.is_platform_team, permissions=permissions_for(user.role))
    return {"access_token": token, "token_type": "bearer", "expires_in": ttl,
            "must_change_password": user.must_change_password}


async def me(db: AsyncConnection, user_id: uuid.UUID) -> dict[str, Any]:
    user = (await db.execute(select(users).where(users.c.id == user_id))).first()
    if user is None:
        raise NotFound("No such user.")
    return {"id": user.id, "email": user.email, "full_name": user.full_name, "role": user.role,
            "organization_id": user.organization_id, "is_platform": user.is_platform_team,
            "must_change_password": user.must_change_password, "permissions": permissions_for(user.role)}


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
    return user_id
