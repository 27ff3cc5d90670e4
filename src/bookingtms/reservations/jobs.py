"""Hold expiry: returns the capacity of lapsed holds, one tenant transaction per organization."""

from __future__ import annotations

from bookingtms.db.engine import for_each_organization
from bookingtms.reservations import service


async def expire_holds(max_organizations: int = 1000) -> int:
    return await for_each_organization("expire_holds", "organizations_with_expired_holds(:n)",
                                       {"n": max_organizations}, service.expire_due)
