"""The audit trail: who did what to which record, from where, with which fields changed.
Rows are chained by a trigger (hash of the predecessor) and the app role may only insert and
read them; `bookingtms doctor` verifies the chains."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from fastapi.encoders import jsonable_encoder
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.http import request_context
from bookingtms.models import audit_log

SECRET_FIELDS = {"password", "password_hash", "current_password", "new_password", "totp_secret", "secret",
                 "secret_hash", "recovery_codes", "token", "refresh_token", "access_token", "otp", "temporary_password"}


def redact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[redacted]" if k in SECRET_FIELDS else v) for k, v in values.items()}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """{field: {"from": old, "to": new}} for fields whose value changed (secrets redacted)."""
    changed = {}
    for key, new in after.items():
        if key in ("updated_at", "version") or before.get(key) == new:
            continue
        changed[key] = {"from": before.get(key), "to": new}
    return {k: ({"from": "[redacted]", "to": "[redacted]"} if k in SECRET_FIELDS else v) for k, v in changed.items()}


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


async def record(db: AsyncConnection, action: str, *, organization_id: uuid.UUID | None,
                 target_type: str | None = None, target_id: Any = None, changes: dict[str, Any] | None = None) -> None:
    """Appends one audit row in the caller's transaction (so it commits or rolls back with the
    change it describes). Actor, request id and address come from the request context."""
    info = request_context.current()
    actor_id = None
    try:
        actor_id = uuid.UUID(info.actor_id) if info.actor_id else None
    except ValueError:
        actor_id = None
    await db.execute(insert(audit_log).values(
        organization_id=organization_id, actor_id=actor_id, actor_type=info.actor_type, actor_label=info.actor_label,
        action=action, target_type=target_type, target_id=str(target_id) if target_id is not None else None,
        request_id=info.request_id, ip=_ip(info.ip), changes=jsonable_encoder(redact(changes or {}))))


async def record_alone(action: str, *, organization_id: uuid.UUID | None, target_type: str | None = None,
                       target_id: Any = None, changes: dict[str, Any] | None = None) -> None:
    """An audit row in its own transaction: for events whose request fails (a refused login),
    which must be kept although the request's own work is rolled back."""
    ctx = DbContext(organization_id=organization_id, is_platform=organization_id is None)
    async with tenant_transaction(ctx) as db:
        await record(db, action, organization_id=organization_id, target_type=target_type, target_id=target_id,
                     changes=changes)
