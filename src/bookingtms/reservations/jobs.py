"""Hold expiry: returns the capacity of lapsed holds, one tenant transaction per organization."""

from __future__ import annotations

from sqlalchemy import text

from bookingtms.db.engine import DbContext, get_engine, tenant_transaction
from bookingtms.reservations import service


async def expire_holds(max_organizations: int = 1000) -> int:
    async with get_engine().connect() as conn:
        org_ids = (await conn.execute(text("SELECT organizations_with_expired_holds(:n)"),
                                      {"n": max_organizations})).scalars().all()
    spots = 0
    for org_id in org_ids:
        async with tenant_transaction(DbContext(organization_id=org_id)) as db:
            spots += await service.expire_due(db, org_id)
    return spots
