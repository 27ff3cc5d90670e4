from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Query

from bookingtms.db.engine import PLATFORM_SCOPE, tenant_transaction
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.principal import Principal, require_platform
from bookingtms.platform import query_stats
from bookingtms.platform import service
from bookingtms.platform.schemas import (
    AccessGrantCreate,
    FeatureFlagCreate,
    FeatureFlagUpdate,
    OrganizationCreate,
    OrganizationUpdate,
    PlanCreate,
    PlanUpdate,
)

router = APIRouter(prefix="/v1/platform", tags=["platform"])


# ---------------------------------------------------------------------------------------------
# Organizations
# ---------------------------------------------------------------------------------------------
@router.post("/organizations", status_code=201)
async def create_organization(body: OrganizationCreate, key: str | None = IdempotencyKey,
                              p: Principal = Depends(require_platform("platform.organizations.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=PLATFORM_SCOPE, scope=p.scope,
                                payload=["POST /v1/platform/organizations", body.model_dump(mode="json")],
                                create=lambda: service.create_organization(db, p.user_id, body))


@router.get("/organizations")
async def list_organizations(paging: PageParams = Depends(page_params),
                             status: Literal["active", "suspended"] | None = Query(None),
                             q: str | None = Query(None, max_length=200, description="name or slug contains"),
                             p: Principal = Depends(require_platform("platform.organizations.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.list_organizations(db, paging.limit, paging.after, status=status, q=q)


@router.get("/organizations/{organization_id}")
async def get_organization(organization_id: uuid.UUID,
                           p: Principal = Depends(require_platform("platform.organizations.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.get_organization(db, organization_id)


@router.patch("/organizations/{organization_id}")
async def update_organization(organization_id: uuid.UUID, body: OrganizationUpdate,
                              p: Principal = Depends(require_platform("platform.organizations.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.update_organization(db, organization_id, body)


# ---------------------------------------------------------------------------------------------
# Access grants
# ---------------------------------------------------------------------------------------------
@router.post("/organizations/{organization_id}/access-grants", status_code=201)
async def create_access_grant(organization_id: uuid.UUID, body: AccessGrantCreate, key: str | None = IdempotencyKey,
                              p: Principal = Depends(require_platform("platform.access_grants.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=PLATFORM_SCOPE, scope=p.scope,
                                payload=["POST access-grants", str(organization_id), body.model_dump(mode="json")],
                                create=lambda: service.create_grant(db, p.user_id, organization_id, body))


@router.get("/organizations/{organization_id}/access-grants")
async def list_access_grants(organization_id: uuid.UUID, paging: PageParams = Depends(page_params),
                             p: Principal = Depends(require_platform("platform.access_grants.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.list_grants(db, organization_id, paging.limit, paging.after)


@router.delete("/organizations/{organization_id}/access-grants/{grant_id}")
async def revoke_access_grant(organization_id: uuid.UUID, grant_id: uuid.UUID,
                              p: Principal = Depends(require_platform("platform.access_grants.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.revoke_grant(db, organization_id, grant_id)


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------
@router.get("/plans")
async def list_plans(active: bool | None = Query(None), paging: PageParams = Depends(page_params),
                     p: Principal = Depends(require_platform("platform.organizations.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.list_plans(db, active=active, limit=paging.limit, after=paging.after)


@router.post("/plans", status_code=201)
async def create_plan(body: PlanCreate, key: str | None = IdempotencyKey,
                      p: Principal = Depends(require_platform("platform.plans.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=PLATFORM_SCOPE, scope=p.scope,
                                payload=["POST /v1/platform/plans", body.model_dump(mode="json")],
                                create=lambda: service.create_plan(db, body))


@router.get("/plans/{plan_id}")
async def get_plan(plan_id: uuid.UUID, p: Principal = Depends(require_platform("platform.organizations.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.get_plan(db, plan_id)


@router.patch("/plans/{plan_id}")
async def update_plan(plan_id: uuid.UUID, body: PlanUpdate,
                      p: Principal = Depends(require_platform("platform.plans.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.update_plan(db, plan_id, body)


# ---------------------------------------------------------------------------------------------
# Feature flags
# ---------------------------------------------------------------------------------------------
@router.get("/feature-flags")
async def list_flags(paging: PageParams = Depends(page_params),
                     p: Principal = Depends(require_platform("platform.flags.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.list_flags(db, limit=paging.limit, after=paging.after)


@router.post("/feature-flags", status_code=201)
async def create_flag(body: FeatureFlagCreate, key: str | None = IdempotencyKey,
                      p: Principal = Depends(require_platform("platform.flags.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=PLATFORM_SCOPE, scope=p.scope,
                                payload=["POST /v1/platform/feature-flags", body.model_dump(mode="json")],
                                create=lambda: service.create_flag(db, body))


@router.get("/feature-flags/{flag_id}")
async def get_flag(flag_id: uuid.UUID, p: Principal = Depends(require_platform("platform.flags.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.get_flag(db, flag_id)


@router.patch("/feature-flags/{flag_id}")
async def update_flag(flag_id: uuid.UUID, body: FeatureFlagUpdate,
                      p: Principal = Depends(require_platform("platform.flags.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.update_flag(db, flag_id, body)


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
@router.get("/stats")
async def stats(p: Principal = Depends(require_platform("platform.stats.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.stats(db)


@router.get("/query-stats")
async def top_statements(limit: int = Query(20, ge=1, le=100),
                         order: query_stats.Order = Query("total_time", description="what the top is by"),
                         p: Principal = Depends(require_platform("platform.stats.view"))):
    """The database's most expensive statements (pg_stat_statements), or `available: false` with
    the reason when the server does not preload the module."""
    async with tenant_transaction(p.db_context()) as db:
        return await query_stats.top_statements(db, limit, order)
