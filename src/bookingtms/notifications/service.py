"""The transactional outbox: anything that leaves the system is written here in the same
transaction as the change that causes it; a delivery job sends it (issue 4 adds the senders)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.models import notification_outbox


async def enqueue(db: AsyncConnection, org_id: uuid.UUID, kind: str, recipient: str, payload: dict[str, Any],
                  channel: str = "email") -> None:
    await db.execute(insert(notification_outbox).values(
        organization_id=org_id, kind=kind, channel=channel, recipient=recipient, payload=payload))
