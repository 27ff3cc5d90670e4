"""Lapsed online payments: a pending_payment booking whose payment_expires_at has passed (the
expiry webhook was missed or is late) is released, one tenant transaction per organization."""

from __future__ import annotations

from sqlalchemy import text

from bookingtms.bookings import service as bookings_service
from bookingtms.db.engine import DbContext, get_engine, tenant_transaction


async def release_lapsed_payments(max_organizations: int = 1000) -> int:
    async with get_engine().connect() as conn:
        org_ids = (await conn.execute(text("SELECT organizations_with_lapsed_payments(:n)"),
                                      {"n": max_organizations})).scalars().all()
    released = 0
    for org_id in org_ids:
        async with tenant_transaction(DbContext(organization_id=org_id)) as db:
            released += await bookings_service.release_lapsed(db, org_id)
    return released
