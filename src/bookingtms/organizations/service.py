"""An organization's own settings, edited by its super-admin: its name, which roles must use
two-step verification (`require_mfa_for`, read by sign-in in auth/service.py), who takes its
payments (`payment_provider`, a column: `offline` or `stripe`, the latter only once Stripe has
enabled charges) and whether customers get SMS reminders (`sms_reminders`).

`require_mfa_for` and `sms_reminders` live in organizations.settings (jsonb); `name` and
`payment_provider` are columns; `stripe_charges_enabled` is shown, never set here (Stripe's
account.updated webhook keeps it)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.audit.service import diff, record
from bookingtms.auth.permissions import ORG_ROLES
from bookingtms.errors import Conflict, NotFound
from bookingtms.models import organizations
from bookingtms.organizations.schemas import OrganizationSettingsUpdate

DEFAULTS: dict[str, Any] = {"require_mfa_for": [], "sms_reminders": False}  # kept in the settings jsonb
COLUMNS = ("name", "payment_provider")  # kept in their own columns


def _public(row) -> dict[str, Any]:
    stored = dict(row.settings or {})
    return {"name": row.name, **{key: stored.get(key, default) for key, default in DEFAULTS.items()},
            "payment_provider": row.payment_provider or "offline",
            "stripe_charges_enabled": bool(row.stripe_charges_enabled)}


async def _row(db: AsyncConnection, organization_id: uuid.UUID, lock: bool = False):
    o = organizations.c
    query = select(o.name, o.settings, o.payment_provider, o.stripe_charges_enabled).where(o.id == organization_id)
    row = (await db.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound("No such organization.", code="organization_not_found")
    return row


async def get_settings(db: AsyncConnection, organization_id: uuid.UUID) -> dict[str, Any]:
    return _public(await _row(db, organization_id))


async def update_settings(db: AsyncConnection, organization_id: uuid.UUID,
                          data: OrganizationSettingsUpdate) -> dict[str, Any]:
    row = await _row(db, organization_id, lock=True)
    before = _public(row)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "name" in changes:
        changes["name"] = changes["name"].strip()
        if not changes["name"]:
            changes.pop("name")
    if "require_mfa_for" in changes:  # kept in the hierarchy's order, highest first, once each
        changes["require_mfa_for"] = [r for r in reversed(ORG_ROLES) if r in set(changes["require_mfa_for"])]
    if (changes.get("payment_provider") == "stripe" and before["payment_provider"] != "stripe"
            and not before["stripe_charges_enabled"]):
        raise Conflict("Stripe cannot take payments for this organization yet: finish Stripe onboarding "
                       "(POST /v1/payments/stripe/onboarding) until charges are enabled.",
                       code="stripe_not_ready", field="payment_provider")
    after = before | changes
    changed = diff(before, after)
    if changed:
        values: dict[str, Any] = {k: after[k] for k in COLUMNS if k in changed}
        json_changes = {k: after[k] for k in DEFAULTS if k in changed}
        if json_changes:
            values["settings"] = dict(row.settings or {}) | json_changes
        await db.execute(update(organizations).where(organizations.c.id == organization_id).values(**values))
        await record(db, "organization.settings_changed", organization_id=organization_id,
                     target_type="organization", target_id=organization_id, changes=changed)
    return after


async def mfa_required_roles(db: AsyncConnection, organization_id: uuid.UUID) -> list[str]:
    """The roles of this organization that must sign in with a second factor."""
    row = (await db.execute(select(organizations.c.settings).where(organizations.c.id == organization_id))).first()
    roles = ((row.settings or {}) if row else {}).get("require_mfa_for") or []
    return [r for r in roles if r in ORG_ROLES]
