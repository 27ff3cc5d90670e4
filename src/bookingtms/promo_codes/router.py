from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query, Response

from bookingtms.audit.service import changed, diff, record
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.principal import Principal, require
from bookingtms.promo_codes import service
from bookingtms.promo_codes.schemas import PromoCodeCreate, PromoCodeUpdate

router = APIRouter(prefix="/v1/promo-codes", tags=["promo-codes"])

PERMISSION = "promo_codes.manage"


@router.get("")
async def list_promo_codes(active: bool | None = Query(None),
                           q: str | None = Query(None, pattern=r"^[A-Za-z0-9_-]{1,64}$"),
                           paging: PageParams = Depends(page_params), p: Principal = Depends(require(PERMISSION))):
    async with read_transaction(p.db_context()) as db:  # a list: the replica, which may lag a moment
        return await service.list_codes(db, p.organization_id, active=active, q=q, limit=paging.limit,
                                        after=paging.after)


@router.post("", status_code=201)
async def create_promo_code(body: PromoCodeCreate, key: str | None = IdempotencyKey,
                            p: Principal = Depends(require(PERMISSION))):
    async def create():
        promo = await service.create(db, p.organization_id, body)
        await record(db, "promo_code.created", organization_id=p.organization_id, target_type="promo_code",
                     target_id=promo["id"], changes=changed({}, promo, PromoCodeCreate.model_fields))
        return promo

    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=p.organization_id, scope=p.scope,
                                payload=["POST /v1/promo-codes", body.model_dump(mode="json")], create=create)


@router.get("/{promo_code_id}")
async def get_promo_code(promo_code_id: uuid.UUID, p: Principal = Depends(require(PERMISSION))):
    async with tenant_transaction(p.db_context()) as db:  # the primary: read back right after a change
        return await service.get(db, p.organization_id, promo_code_id)


@router.patch("/{promo_code_id}")
async def update_promo_code(promo_code_id: uuid.UUID, body: PromoCodeUpdate,
                            p: Principal = Depends(require(PERMISSION))):
    async with tenant_transaction(p.db_context()) as db:
        before, after = await service.update_code(db, p.organization_id, promo_code_id, body)
        if (changes := changed(before, after, body.model_fields_set)):
            await record(db, "promo_code.updated", organization_id=p.organization_id, target_type="promo_code",
                         target_id=promo_code_id, changes=changes)
        return after


@router.delete("/{promo_code_id}", status_code=204)
async def delete_promo_code(promo_code_id: uuid.UUID, p: Principal = Depends(require(PERMISSION))):
    async with tenant_transaction(p.db_context()) as db:
        before = await service.delete_code(db, p.organization_id, promo_code_id)
        await record(db, "promo_code.deleted", organization_id=p.organization_id, target_type="promo_code",
                     target_id=promo_code_id, changes=diff({"code": before["code"], "deleted": False},
                                                           {"code": before["code"], "deleted": True}))
    return Response(status_code=204)
