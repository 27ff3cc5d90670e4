"""An organization's own settings, edited by its super-admin. For now: which roles must use
two-step verification (`require_mfa_for`), read by sign-in (auth/service.py)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.audit.service import diff, record
from bookingtms.auth.permissions import ORG_ROLES
from bookingtms.errors import NotFound
from bookingtms.models import organizations
from bookingtms.organizations.schemas import OrganizationSettingsUpdate

DEFAULTS: dict[str, Any] = {"require_mfa_for": []}


def _public(stored: dict[str, Any] | None) -> dict[str, Any]:
    stored = stored or {}
    return {key: stored.get(key, default) for key, default in DEFAULTS.items()}


async def _stored(db: AsyncConnection, organization_id: uuid.UUID, lock: bool = False) -> dict[str, Any]:
    query = select(organizations.c.settings).where(organizations.c.id == organization_id)
    row = (await db.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound("No such organization.", code="organization_not_found")
    return dict(row.settings or {})


async def get_settings(db: AsyncConnection, organization_id: uuid.UUID) -> dict[str, Any]:
    return _public(await _stored(db, organization_id))


async def update_settings(db: AsyncConnection, organization_id: uuid.UUID,
                          data: OrganizationSettingsUpdate) -> dict[str, Any]:
    stored = await _stored(db, organization_id, lock=True)
    before = _public(stored)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "require_mfa_for" in changes:  # kept in the hierarchy's order, highest first, once each
        changes["require_mfa_for"] = [r for r in reversed(ORG_ROLES) if r in set(changes["require_mfa_for"])]
    after = before | changes
    changed = diff(before, after)
    if changed:
        await db.execute(update(organizations).where(organizations.c.id == organization_id)
                         .values(settings=stored | changes))
        await record(db, "organization.settings_changed", organization_id=organization_id,
                     target_type="organization", target_id=organization_id, changes=changed)
    return after


async def mfa_required_roles(db: AsyncConnection, organization_id: uuid.UUID) -> list[str]:
    """The roles of this organization that must sign in with a second factor."""
    row = (await db.execute(select(organizations.c.settings).where(organizations.c.id == organization_id))).first()
    roles = ((row.settings or {}) if row else {}).get("require_mfa_for") or []
    return [r for r in roles if r in ORG_ROLES]
