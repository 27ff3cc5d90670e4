from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response

from bookingtms.activities import service
from bookingtms.activities.schemas import ActivityCreate, ActivityUpdate, GenerateSessions
from bookingtms.audit.service import changed, diff, record
from bookingtms.db.engine import read_transaction, tenant_transaction
from bookingtms.http.idempotency import IdempotencyKey, idempotent
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.principal import Principal, require
from bookingtms.sessions import service as sessions_service

router = APIRouter(prefix="/v1/activities", tags=["activities"])


@router.get("")
async def list_activities(venue_id: uuid.UUID | None = None, paging: PageParams = Depends(page_params),
                          p: Principal = Depends(require("activities.view"))):
    async with read_transaction(p.db_context()) as db:
        return await service.list_activities(db, p.organization_id, venue_id, paging.limit, paging.after)


@router.post("", status_code=201)
async def create_activity(body: ActivityCreate, key: str | None = IdempotencyKey,
                          p: Principal = Depends(require("activities.manage"))):
    async def create():
        activity = await service.create_activity(db, p.organization_id, body)
        await record(db, "activity.created", organization_id=p.organization_id, target_type="activity",
                     target_id=activity["id"], changes=changed({}, activity, ActivityCreate.model_fields))
        return activity

    async with tenant_transaction(p.db_context()) as db:
        return await idempotent(db, key, organization_id=p.organization_id, scope=p.scope,
                                payload=["POST /v1/activities", body.model_dump(mode="json")], create=create)


@router.get("/{activity_id}")
async def get_activity(activity_id: uuid.UUID, p: Principal = Depends(require("activities.view"))):
    async with read_transaction(p.db_context()) as db:
        return await service.get_activity(db, p.organization_id, activity_id)


@router.patch("/{activity_id}")
async def update_activity(activity_id: uuid.UUID, body: ActivityUpdate,
                          p: Principal = Depends(require("activities.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        _, after = await service.edit_activity(db, p.organization_id, activity_id, body)
        return after


@router.delete("/{activity_id}", status_code=204)
async def delete_activity(activity_id: uuid.UUID, p: Principal = Depends(require("activities.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        before = await service.get_activity(db, p.organization_id, activity_id)
        await service.archive_activity(db, p.organization_id, activity_id)
        await record(db, "activity.archived", organization_id=p.organization_id, target_type="activity",
                     target_id=activity_id, changes=diff({"is_active": before["is_active"], "archived": False},
                                                         {"is_active": False, "archived": True}))
    return Response(status_code=204)


@router.post("/{activity_id}/sessions/generate")
async def generate_sessions(activity_id: uuid.UUID, body: GenerateSessions,
                            p: Principal = Depends(require("activities.manage"))):
    async with tenant_transaction(p.db_context()) as db:
        result = await sessions_service.generate(db, p.organization_id, activity_id, body.from_, body.to)
        await record(db, "sessions.generated", organization_id=p.organization_id, target_type="activity",
                     target_id=activity_id, changes={"from": body.from_, "to": body.to, **result})
        return result
