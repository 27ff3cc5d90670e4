from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from bookingtms.db.engine import tenant_transaction
from bookingtms.http.principal import Principal, require
from bookingtms.payments import service, webhooks

router = APIRouter(prefix="/v1/payments", tags=["payments"])
webhook_router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("/stripe/onboarding")
async def stripe_onboarding(p: Principal = Depends(require("organization.manage"))):
    """Stripe Connect onboarding: creates the organization's connected account if it has none,
    and returns a fresh account link to Stripe's onboarding form."""
    async with tenant_transaction(p.db_context()) as db:
        url = await service.start_stripe_onboarding(db, p.organization_id, p.email)
    return {"url": url}


@webhook_router.post("/stripe")
async def stripe_webhook(request: Request):
    """Stripe's events (signature checked against STRIPE_WEBHOOK_SECRET; each applied once)."""
    return await webhooks.receive(await request.body(), request.headers.get("stripe-signature"))
