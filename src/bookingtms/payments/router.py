from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select, update

from bookingtms.audit.service import record
from bookingtms.db.engine import tenant_transaction
from bookingtms.http.principal import Principal, require
from bookingtms.models import organizations
from bookingtms.payments import providers, webhooks

router = APIRouter(prefix="/v1/payments", tags=["payments"])
webhook_router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("/stripe/onboarding")
async def stripe_onboarding(p: Principal = Depends(require("organization.manage"))):
    """Stripe Connect onboarding: creates the organization's connected account if it has none,
    and returns a fresh account link to Stripe's onboarding form."""
    o = organizations.c
    async with tenant_transaction(p.db_context()) as db:
        row = (await db.execute(select(o.stripe_account_id).where(o.id == p.organization_id)
                                .with_for_update())).one()
        account_id = row.stripe_account_id
        if not account_id:
            account_id = await providers.create_connected_account(p.organization_id, p.email, None)
            await db.execute(update(organizations).where(o.id == p.organization_id)
                             .values(stripe_account_id=account_id))
            await record(db, "payments.stripe_account_created", organization_id=p.organization_id,
                         target_type="organization", target_id=p.organization_id,
                         changes={"stripe_account_id": account_id})
        url = await providers.create_account_link(p.organization_id, account_id, uuid.uuid4())
    return {"url": url}


@webhook_router.post("/stripe")
async def stripe_webhook(request: Request):
    """Stripe's events (signature checked against STRIPE_WEBHOOK_SECRET; each applied once)."""
    return await webhooks.receive(await request.body(), request.headers.get("stripe-signature"))
