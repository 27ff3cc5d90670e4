"""Access-grant expiry: writes `access_grant.expired` into the organization's audit chain once for
each grant that has ended, one tenant transaction per organization."""

from __future__ import annotations

from bookingtms.db.engine import for_each_organization
from bookingtms.platform import service


async def audit_ended_grants(max_organizations: int = 1000) -> int:
    # the platform manages grants (row-level security lets only a platform context mark them)
    return await for_each_organization("audit_ended_grants", "organizations_with_ended_grants(:n)",
                                       {"n": max_organizations}, service.audit_ended_grants, is_platform=True)
