from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query, Response

from bookingtms.auth import state
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.principal import Principal, require
from bookingtms.users import service
from bookingtms.users.schemas import OrgRole, UserInvite, UserUpdate

router = APIRouter(prefix="/v1/users", tags=["users"])


def _rank(p: Principal) -> int:
    return service.actor_rank(p.role, p.permissions)


@router.get("")
async def list_users(role: OrgRole | None = None, active: bool | None = Query(None),
                     paging: PageParams = Depends(page_params), p: Principal = Depends(require("users.view"))):
    async with read_transaction(p.db_context()) as db:  # a list: the replica, which may lag a moment
        return await service.list_users(db, p.organization_id, role=role, active=active, limit=paging.limit,
                                        after=paging.after)


@router.post("", status_code=201)
async def invite_user(body: UserInvite, key: str | None = IdempotencyKey,
                      p: Principal = Depends(require("users.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=p.organization_id, scope=p.scope,
                                payload=["POST /v1/users", body.model_dump(mode="json")],
                                create=lambda: service.invite(db, p.organization_id, p.user_id, _rank(p), body))


@router.get("/{user_id}")
async def get_user(user_id: uuid.UUID, p: Principal = Depends(require("users.view"))):
    async with tenant_transaction(p.db_context()) as db:  # the primary: read back right after an invite or change
        return await service.get_user(db, p.organization_id, user_id)


@router.patch("/{user_id}")
async def update_user(user_id: uuid.UUID, body: UserUpdate, p: Principal = Depends(require("users.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        user, auth_changed = await service.update_user(db, p.organization_id, _rank(p), user_id, body)
    if auth_changed:  # after commit: the next request of that user sees the new role / activity
        await state.forget_user(user_id)
    return user


@router.delete("/{user_id}", status_code=204)
async def deactivate_user(user_id: uuid.UUID, p: Principal = Depends(require("users.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        _, auth_changed = await service.update_user(db, p.organization_id, _rank(p), user_id,
                                                    UserUpdate(is_active=False))
    if auth_changed:
        await state.forget_user(user_id)
    return Response(status_code=204)
