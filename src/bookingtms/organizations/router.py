from fastapi import APIRouter, Depends

from bookingtms.db.engine import tenant_transaction
from bookingtms.http.principal import Principal, require
from bookingtms.organizations import service
from bookingtms.organizations.schemas import OrganizationSettings, OrganizationSettingsUpdate

router = APIRouter(prefix="/v1/organization", tags=["organization"])


@router.get("/settings", response_model=OrganizationSettings)
async def get_settings(p: Principal = Depends(require("organization.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.get_settings(db, p.organization_id)


@router.patch("/settings", response_model=OrganizationSettings)
async def update_settings(body: OrganizationSettingsUpdate, p: Principal = Depends(require("organization.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.update_settings(db, p.organization_id, body)
