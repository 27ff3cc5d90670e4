from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query

from bookingtms.customers import service
from bookingtms.customers.schemas import CustomerUpdate
from bookingtms.db.engine import tenant_transaction
from bookingtms.http.pagination import PageParams
from bookingtms.http.principal import Principal, require

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get("")
async def list_customers(q: str | None = Query(None, max_length=200), paging: PageParams = Depends(),
                         p: Principal = Depends(require("customers.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.list_customers(db, p.organization_id, q, paging.limit, paging.after)


@router.get("/{customer_id}")
async def get_customer(customer_id: uuid.UUID, p: Principal = Depends(require("customers.view"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.get_customer(db, p.organization_id, customer_id)


@router.patch("/{customer_id}")
async def update_customer(customer_id: uuid.UUID, body: CustomerUpdate,
                          p: Principal = Depends(require("customers.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await service.update_customer(db, p.organization_id, customer_id, body)
