"""Payment records. The built-in `offline` provider: the customer pays at the venue, so a
booking is confirmed at once with a pending payment."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.models import payments

OFFLINE = "offline"


async def record_offline_charge(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID, amount: int,
                                currency: str) -> dict:
    await db.execute(insert(payments).values(
        organization_id=org_id, booking_id=booking_id, provider=OFFLINE, kind="charge", amount=amount,
        currency=currency, status="pending", net_to_merchant=amount))
    return {"provider": OFFLINE, "status": "pending", "checkout_url": None}


async def void_pending(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID) -> None:
    """A cancelled booking's unpaid charges will never be collected."""
    await db.execute(update(payments).where(
        payments.c.organization_id == org_id, payments.c.booking_id == booking_id, payments.c.kind == "charge",
        payments.c.status == "pending").values(status="cancelled"))
