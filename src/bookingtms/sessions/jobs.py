"""Keeps every active activity's sessions generated `session_horizon_days` ahead."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from bookingtms.config import get_settings
from bookingtms.db.engine import DbContext, get_engine, tenant_transaction
from bookingtms.sessions import service


async def extend_horizons(max_organizations: int = 500) -> int:
    # A day's slack: a venue west of UTC reaches the same horizon a local day later.
    until = datetime.now(timezone.utc).date() + timedelta(days=get_settings().session_horizon_days - 1)
    async with get_engine().connect() as conn:
        org_ids = (await conn.execute(text("SELECT organizations_with_sessions_due(:d, :n)"),
                                      {"d": until, "n": max_organizations})).scalars().all()
    done = 0
    for org_id in org_ids:
        async with tenant_transaction(DbContext(organization_id=org_id)) as db:
            done += await service.extend_horizon(db, org_id, until)
    return done
