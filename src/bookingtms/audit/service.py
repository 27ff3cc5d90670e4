"""The audit trail: who did what to which record, from where, with which fields changed.
Rows are chained by a trigger (hash of the predecessor) and the app role may only insert and
read them; `bookingtms doctor` verifies the chains."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from typing import Any

from fastapi.encoders import jsonable_encoder
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.errors import ValidationFailed
from bookingtms.http import request_context
from bookingtms.http.pagination import page
from bookingtms.models import audit_log, metadata

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


# Built once (SQLAlchemy memoizes its cache key): every audited request runs it.
_INSERT_AUDIT = insert(audit_log)


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
    await db.execute(_INSERT_AUDIT, dict(
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


async def lock_target(db: AsyncConnection, table: str, organization_id: uuid.UUID, row_id: uuid.UUID) -> None:
    """Locks the tenant row an update is about to change, before its before-image is read, so the
    diff recorded is exactly the change made (a concurrent update of the row waits for this one)."""
    t = metadata.tables[table]
    await db.execute(select(t.c.id).where(t.c.organization_id == organization_id, t.c.id == row_id)
                     .with_for_update())


def changed(before: dict[str, Any], after: dict[str, Any], fields) -> dict[str, Any]:
    """`diff` limited to `fields` (what a request asked to change)."""
    return diff({k: before.get(k) for k in fields}, {k: after.get(k) for k in fields})


# ---------------------------------------------------------------------------------------------
# Reading the trail
# ---------------------------------------------------------------------------------------------
LIST_COLUMNS = ("id", "organization_id", "created_at", "action", "actor_id", "actor_type", "actor_label",
                "target_type", "target_id", "request_id", "ip", "changes", "chain_seq")


def _cursor(after: list | None) -> tuple[datetime, int] | None:
    if after is None:
        return None
    try:
        moment = datetime.fromisoformat(after[0])
        row_id = int(after[1])
    except (TypeError, ValueError):
        raise ValidationFailed("The cursor is not one this API gave out.", code="invalid_cursor", field="cursor") from None
    if moment.tzinfo is None:
        raise ValidationFailed("The cursor is not one this API gave out.", code="invalid_cursor", field="cursor")
    return moment, row_id


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_entries(db: AsyncConnection, *, organization_id: uuid.UUID | None, action: str | None,
                       actor: str | None, target_type: str | None, target_id: str | None, start: datetime | None,
                       end: datetime | None, limit: int, after: list | None) -> dict[str, Any]:
    """Newest first. `organization_id` limits to one organization's trail (row-level security
    decides what is visible at all). `action` is exact, or a prefix when it ends with `*`
    (`booking.*`); `actor` is a user or API key id, or a user's email."""
    a = audit_log.c
    query = select(*(a[c] for c in LIST_COLUMNS))
    if organization_id is not None:
        query = query.where(a.organization_id == organization_id)
    if action:
        query = query.where(a.action.like(_like_prefix(action[:-1]), escape="\\") if action.endswith("*")
                            else a.action == action)
    if actor:
        try:
            query = query.where(a.actor_id == uuid.UUID(actor))
        except ValueError:
            query = query.where(func.lower(a.actor_label) == actor.strip().lower())
    if target_type:
        query = query.where(a.target_type == target_type)
    if target_id:
        query = query.where(a.target_id == target_id)
    if start is not None:
        query = query.where(a.created_at >= start)
    if end is not None:
        query = query.where(a.created_at < end)
    if (key := _cursor(after)):
        query = query.where(func.row(a.created_at, a.id) < func.row(*key))
    rows = (await db.execute(query.order_by(a.created_at.desc(), a.id.desc()).limit(limit + 1))).all()
    items = [{**r._mapping, "ip": str(r.ip) if r.ip is not None else None} for r in rows]
    return page(items, limit, lambda r: (r["created_at"].isoformat(), r["id"]))
