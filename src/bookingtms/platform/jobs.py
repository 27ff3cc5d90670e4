"""Access-grant expiry: writes `access_grant.expired` into the organization's audit chain once for
each grant that has ended, one tenant transaction per organization."""

from __future__ import annotations

from sqlalchemy import text

from bookingtms.db.engine import DbContext, get_engine, tenant_transaction
from bookingtms.platform import service


async def audit_ended_grants(max_organizations: int = 1000) -> int:
    async with get_engine().connect() as conn:
        org_ids = (await conn.execute(text("SELECT organizations_with_ended_grants(:n)"),
                                      {"n": max_organizations})).scalars().all()
    written = 0
    for org_id in org_ids:
        # the platform manages grants (row-level security lets only a platform context mark them)
        async with tenant_transaction(DbContext(organization_id=org_id, is_platform=True)) as db:
            written += await service.audit_ended_grants(db, org_id)
    return written
