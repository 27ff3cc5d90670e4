from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query

from bookingtms.audit import service
from bookingtms.db.engine import DbContext, read_transaction
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.params import on_the_loop, parse_instant, window_end
from bookingtms.http.principal import Principal, require, require_platform

router = APIRouter(tags=["audit"])

UTC = ZoneInfo("UTC")


class AuditFilters:
    """`from`/`to`: dates (UTC; `to` includes that day) or RFC 3339 times."""

    def __init__(self, action: str | None = Query(None, max_length=100),
                 actor: str | None = Query(None, max_length=320, description="user or API key id, or a user's email"),
                 target_type: str | None = Query(None, max_length=50),
                 target: str | None = Query(None, max_length=100, description="the target's id"),
                 start: str | None = Query(None, alias="from", max_length=40),
                 end: str | None = Query(None, alias="to", max_length=40)):
        self.action, self.actor, self.target_type, self.target_id = action, actor, target_type, target
        self.start = parse_instant(start, "from", UTC)
        self.end = window_end(end, UTC)

    def as_kwargs(self) -> dict:
        return {"action": self.action, "actor": self.actor, "target_type": self.target_type,
                "target_id": self.target_id, "start": self.start, "end": self.end}


@router.get("/v1/audit-log")
async def organization_audit_log(filters: AuditFilters = Depends(on_the_loop(AuditFilters)),
                                 paging: PageParams = Depends(page_params),
                                 p: Principal = Depends(require("audit.view"))):
    """The organization's own trail, newest first (from the replica: it may lag a moment)."""
    async with read_transaction(p.db_context()) as db:
        return await service.list_entries(db, organization_id=p.organization_id, **filters.as_kwargs(),
                                          limit=paging.limit, after=paging.after)


@router.get("/v1/platform/audit-log")
async def platform_audit_log(organization_id: uuid.UUID | None = None,
                             filters: AuditFilters = Depends(on_the_loop(AuditFilters)),
                             paging: PageParams = Depends(page_params),
                             p: Principal = Depends(require_platform("platform.audit.view"))):
    """What the platform may see: its own chain (events outside any organization) and what
    platform admins did in organizations. Tenants' own events stay theirs."""
    # The platform's own view, also when the admin is acting under an access grant. From the replica.
    async with read_transaction(DbContext(user_id=p.user_id, is_platform=True)) as db:
        return await service.list_entries(db, organization_id=organization_id, **filters.as_kwargs(),
                                          limit=paging.limit, after=paging.after)
