from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from bookingtms.db.engine import PLATFORM_SCOPE, tenant_transaction
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.pagination import PageParams
from bookingtms.http.principal import Principal, require_platform
from bookingtms.platform import service
from bookingtms.platform.schemas import OrganizationCreate

router = APIRouter(prefix="/v1/platform", tags=["platform"])


@router.post("/organizations", status_code=201)
async def create_organization(body: OrganizationCreate, key: str | None = IdempotencyKey,
                              p: Principal = Depends(require_platform("platform.organizations.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=PLATFORM_SCOPE, scope=p.scope,
                                payload=["POST /v1/platform/organizations", body.model_dump(mode="json")],
                                create=lambda: service.create_organization(db, p.user_id, body))


@router.get("/organizations")
async def list_organizations(paging: PageParams = Depends(),
                             p: Principal = Depends(require_platform("platform.organizations.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.list_organizations(db, paging.limit, paging.after)


@router.get("/organizations/{organization_id}")
async def get_organization(organization_id: uuid.UUID,
                           p: Principal = Depends(require_platform("platform.organizations.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.get_organization(db, organization_id)
