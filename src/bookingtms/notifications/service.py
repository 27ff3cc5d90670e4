"""The transactional outbox: anything that leaves the system is written here in the same
transaction as the change that causes it; notifications.jobs delivers it (retries with backoff,
dead letters after notification_max_attempts), and staff see and requeue dead letters here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.db.engine import as_dicts
from bookingtms.errors import Conflict, NotFound
from bookingtms.http.pagination import keyset, page
from bookingtms.models import notification_outbox

# What staff see of an outbox row: never the payload (it may hold a temporary password or a
# password-reset link).
LIST_COLUMNS = ("id", "kind", "channel", "recipient", "status", "attempts", "next_attempt_at", "last_error",
                "sent_at", "created_at", "booking_id", "provider_message_id")


_ENQUEUE = insert(notification_outbox).returning(notification_outbox.c.id)  # built once: every booking runs it


async def enqueue(db: AsyncConnection, org_id: uuid.UUID, kind: str, recipient: str, payload: dict[str, Any],
                  channel: str = "email", booking_id: uuid.UUID | None = None) -> uuid.UUID:
    if booking_id is None and payload.get("booking_id"):
        try:
            booking_id = uuid.UUID(str(payload["booking_id"]))
        except ValueError:
            booking_id = None
    return (await db.execute(_ENQUEUE, dict(organization_id=org_id, kind=kind, channel=channel, recipient=recipient,
                                            payload=payload, booking_id=booking_id))).scalar_one()


async def list_notifications(db: AsyncConnection, org_id: uuid.UUID, *, status: str | None, kind: str | None,
                             booking_id: uuid.UUID | None, limit: int, after: list | None) -> dict[str, Any]:
    n = notification_outbox.c
    query = select(*(n[c] for c in LIST_COLUMNS)).where(n.organization_id == org_id)
    if status:
        query = query.where(n.status == status)
    if kind:
        query = query.where(n.kind == kind)
    if booking_id:
        query = query.where(n.booking_id == booking_id)
    if (key := keyset(after, datetime)):
        query = query.where(func.row(n.created_at, n.id) < func.row(*key))
    rows = as_dicts(await db.execute(query.order_by(n.created_at.desc(), n.id.desc()).limit(limit + 1)))
    return page(rows, limit, lambda r: (r["created_at"].isoformat(), str(r["id"])))


async def get_notification(db: AsyncConnection, org_id: uuid.UUID, notification_id: uuid.UUID) -> dict[str, Any]:
    n = notification_outbox.c
    row = (await db.execute(select(*(n[c] for c in LIST_COLUMNS)).where(
        n.organization_id == org_id, n.id == notification_id))).first()
    if row is None:
        raise NotFound("No such notification.", code="notification_not_found")
    return dict(row._mapping)


async def retry(db: AsyncConnection, org_id: uuid.UUID, notification_id: uuid.UUID) -> dict[str, Any]:
    """Requeues a dead (or failed) notification: pending again, due now, with a fresh set of attempts."""
    n = notification_outbox.c
    done = (await db.execute(update(notification_outbox).where(
        n.organization_id == org_id, n.id == notification_id, n.status.in_(("dead", "failed"))
    ).values(status="pending", attempts=0, next_attempt_at=func.now(), locked_until=None)
     .returning(n.id))).first()
    if done is None:
        current = await get_notification(db, org_id, notification_id)  # 404 if it is not there
        raise Conflict(f"Only a dead notification can be retried; this one is {current['status']}.",
                       code="notification_not_dead", status_now=current["status"])
    return await get_notification(db, org_id, notification_id)
