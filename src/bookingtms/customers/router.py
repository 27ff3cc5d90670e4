from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query

from bookingtms.audit.service import changed, lock_target, record, record_alone
from bookingtms.customers import service
from bookingtms.customers.schemas import CustomerUpdate
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.principal import Principal, require

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get("")
async def list_customers(q: str | None = Query(None, max_length=200), paging: PageParams = Depends(page_params),
                         p: Principal = Depends(require("customers.view"))):
    # From the replica (a list may lag a moment); the audit row is written on the primary before answering.
    async with read_transaction(p.db_context()) as db:
        result = await service.list_customers(db, p.organization_id, q, paging.limit, paging.after)
    await record_alone("customers.listed", organization_id=p.organization_id, target_type="customer", changes={
        "filter": {"q": q} if q else {}, "count": len(result["items"]),
        "customer_ids": [item["id"] for item in result["items"]]})
    return result


# On the primary: staff read a customer right after changing them, and the audit row needs it anyway.
@router.get("/{customer_id}")
async def get_customer(customer_id: uuid.UUID, p: Principal = Depends(require("customers.view"))):
    async with tenant_transaction(p.db_context()) as db:
        customer = await service.get_customer(db, p.organization_id, customer_id)
        await record(db, "customer.viewed", organization_id=p.organization_id, target_type="customer",
                     target_id=customer_id)
        return customer


@router.patch("/{customer_id}")
async def update_customer(customer_id: uuid.UUID, body: CustomerUpdate,
                          p: Principal = Depends(require("customers.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        await lock_target(db, "customers", p.organization_id, customer_id)
        before = await service.get_customer(db, p.organization_id, customer_id)
        after = await service.update_customer(db, p.organization_id, customer_id, body)
        if (changes := changed(before, after, body.model_fields_set)):
            await record(db, "customer.updated", organization_id=p.organization_id, target_type="customer",
                         target_id=customer_id, changes=changes)
        return after
