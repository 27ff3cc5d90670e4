"""Keeps every active activity's sessions generated `session_horizon_days` ahead."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bookingtms.config import get_settings
from bookingtms.db.engine import for_each_organization
from bookingtms.sessions import service


async def extend_horizons(max_organizations: int = 500) -> int:
    # A day's slack: a venue west of UTC reaches the same horizon a local day later.
    until = datetime.now(timezone.utc).date() + timedelta(days=get_settings().session_horizon_days - 1)
    return await for_each_organization("extend_horizons", "organizations_with_sessions_due(:d, :n)",
                                       {"d": until, "n": max_organizations},
                                       lambda db, org_id: service.extend_horizon(db, org_id, until))
