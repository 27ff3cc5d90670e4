from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Query

from bookingtms.audit.service import diff, record
from bookingtms.db.engine import tenant_transaction
from bookingtms.http.pagination import PageParams, page_params
from bookingtms.http.principal import Principal, require
from bookingtms.notifications import service

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@router.get("")
async def list_notifications(status: Literal["pending", "sent", "failed", "dead"] | None = None,
                             kind: str | None = Query(None, pattern=r"^[a-z_]{1,64}$"),
                             booking_id: uuid.UUID | None = None,
                             paging: PageParams = Depends(page_params),
                             p: Principal = Depends(require("bookings.view"))):
    """The organization's outgoing notifications, newest first; `?status=dead` lists the dead letters."""
    async with tenant_transaction(p.db_context()) as db:
        return await service.list_notifications(db, p.organization_id, status=status, kind=kind,
                                                booking_id=booking_id, limit=paging.limit, after=paging.after)


@router.post("/{notification_outbox_id}/retry")
async def retry_notification(notification_outbox_id: uuid.UUID, p: Principal = Depends(require("bookings.create"))):
    """Requeues a dead letter (409 `notification_not_dead` for any other)."""
    async with tenant_transaction(p.db_context()) as db:
        before = await service.get_notification(db, p.organization_id, notification_outbox_id)
        after = await service.retry(db, p.organization_id, notification_outbox_id)
        await record(db, "notification.retried", organization_id=p.organization_id, target_type="notification",
                     target_id=notification_outbox_id,
                     changes=diff({"status": before["status"], "attempts": before["attempts"]},
                                  {"status": after["status"], "attempts": after["attempts"]}))
        return after
