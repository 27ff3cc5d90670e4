from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response

from bookingtms.api_keys import service
from bookingtms.api_keys.schemas import ApiKeyCreate
from bookingtms.audit.service import record
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.principal import Principal, require

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


@router.get("")
async def list_keys(paging: PageParams = Depends(page_params), p: Principal = Depends(require("api_keys.manage"))):
    async with read_transaction(p.db_context()) as db:  # a list: the replica, which may lag a moment
        return await service.list_keys(db, p.organization_id, paging.limit, paging.after)


@router.post("", status_code=201)
async def create_key(body: ApiKeyCreate, key: str | None = IdempotencyKey,
                     p: Principal = Depends(require("api_keys.manage"))):
    async def create():
        created = await service.create_key(db, p.organization_id, p.user_id, p.permissions, body)
        await record(db, "api_key.created", organization_id=p.organization_id, target_type="api_key",
                     target_id=created["id"], changes={"name": body.name, "permissions": created["permissions"]})
        return created

    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=p.organization_id, scope=p.scope,
                                payload=["POST /v1/api-keys", body.model_dump(mode="json")], create=create)


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: uuid.UUID, p: Principal = Depends(require("api_keys.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        revoked = await service.revoke_key(db, p.organization_id, key_id)
        await record(db, "api_key.revoked", organization_id=p.organization_id, target_type="api_key", target_id=key_id)
    await service.forget(revoked["prefix"])
    return Response(status_code=204)
