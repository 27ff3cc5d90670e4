"""Stripe webhooks: verified, stored under the event's Stripe id before anything is done with it,
then applied exactly once.

Each event is stored (its own committed transaction) under (organization, event id): the
organization is the connected account's (`event.account`, or the account itself for
`account.*` events), the nil UUID for platform events. It is then applied in a second transaction
that first locks the stored row: a replay, or a duplicate delivered concurrently, waits for the
first and finds `handled_at` set, and changes nothing. A failure rolls the handling back, counts the
attempt (`attempts`, `last_error`) and answers 503, so Stripe delivers the event again.

Events are applied so that any order leaves a consistent state: `checkout.session.expired` after
`completed` changes nothing; `completed` after `expired` takes the capacity again or refunds;
`charge.refunded` before `completed` records the refund against the pending charge."""

from __future__ import annotations

import json
import uuid
from typing import Any

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.audit.service import record
from bookingtms.bookings import service as bookings_service
from bookingtms.config import get_settings
from bookingtms.db.engine import DbContext, tenant_transaction
from bookingtms.errors import AppError, ServiceUnavailable
from bookingtms.models import organizations, payments
from bookingtms.payments import providers
from bookingtms.payments import service as payments_service

log = structlog.get_logger("bookingtms.payments")

PLATFORM = uuid.UUID(int=0)


class InvalidSignature(AppError):
    status, code, title = 400, "invalid_signature", "Invalid signature"


_STORE = text("""
    INSERT INTO stripe_events (organization_id, id, type, account, payload)
    VALUES (:org, :id, :type, :account, CAST(:payload AS jsonb))
    ON CONFLICT (organization_id, id) DO NOTHING
""")
_CLAIM = text("SELECT handled_at FROM stripe_events WHERE organization_id = :org AND id = :id FOR UPDATE")
_DONE = text("UPDATE stripe_events SET handled_at = now(), attempts = attempts + 1, last_error = NULL "
             "WHERE organization_id = :org AND id = :id")
_FAILED = text("UPDATE stripe_events SET attempts = attempts + 1, last_error = :error "
               "WHERE organization_id = :org AND id = :id")


def verify(payload: bytes, signature: str | None) -> dict[str, Any]:
    secret = get_settings().stripe_webhook_secret
    if not secret:
        raise InvalidSignature("Stripe webhooks are not configured here; nothing can be verified.")
    try:
        providers.construct_event(payload, signature, secret)
        event = json.loads(payload)
    except ValueError:
        raise InvalidSignature("The Stripe-Signature header is missing or does not match this payload.") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("data"), dict):
        raise InvalidSignature("The payload is not a Stripe event.")
    return event


async def _organization_of(event: dict[str, Any]) -> uuid.UUID | None:
    account = event.get("account")
    if not account and str(event.get("type", "")).startswith("account."):
        account = (event["data"].get("object") or {}).get("id")
    if not account:
        return None
    async with tenant_transaction(DbContext()) as db:
        return (await db.execute(text("SELECT organization_by_stripe_account(:a)"), {"a": account})).scalar()


async def receive(payload: bytes, signature: str | None) -> dict[str, Any]:
    event = verify(payload, signature)
    org_id = await _organization_of(event)
    scope = org_id or PLATFORM
    ctx = DbContext(organization_id=org_id)
    key = {"org": scope, "id": event["id"]}
    async with tenant_transaction(ctx) as db:
        await db.execute(_STORE, {**key, "type": str(event.get("type", "")), "account": event.get("account"),
                                  "payload": payload.decode()})
    try:
        async with tenant_transaction(ctx) as db:
            if (await db.execute(_CLAIM, key)).scalar_one_or_none() is not None:
                return {"received": True, "duplicate": True}
            outcome = await _apply(db, org_id, event) if org_id else "ignored"
            await db.execute(_DONE, key)
    except Exception as exc:
        log.exception("stripe_event_failed", event_id=event["id"], type=event.get("type"))
        async with tenant_transaction(ctx) as db:
            await db.execute(_FAILED, {**key, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise ServiceUnavailable("The event could not be applied now; Stripe will deliver it again.",
                                 code="event_failed") from None
    return {"received": True, "outcome": outcome}


async def _apply(db: AsyncConnection, org_id: uuid.UUID, event: dict[str, Any]) -> str:
    kind = event.get("type")
    obj = event["data"].get("object") or {}
    if kind == "account.updated":
        return await _account_updated(db, org_id, obj)
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        return await _checkout_completed(db, org_id, obj)
    if kind in ("checkout.session.expired", "checkout.session.async_payment_failed"):
        return await _checkout_expired(db, org_id, obj)
    if kind == "charge.refunded":
        return await _charge_refunded(db, org_id, obj)
    return "ignored"


async def _account_updated(db: AsyncConnection, org_id: uuid.UUID, account: dict[str, Any]) -> str:
    """Keeps charges/payouts enabled true to Stripe. The first time charges become enabled the
    organization's payments switch to Stripe."""
    o = organizations.c
    before = (await db.execute(select(o.stripe_charges_enabled)
                               .where(o.id == org_id, o.stripe_account_id == account.get("id"))
                               .with_for_update())).first()
    if before is None:
        return "ignored"
    charges, payouts = bool(account.get("charges_enabled")), bool(account.get("payouts_enabled"))
    values: dict[str, Any] = {"stripe_charges_enabled": charges, "stripe_payouts_enabled": payouts}
    if charges and not before.stripe_charges_enabled:
        values["payment_provider"] = providers.STRIPE.name
    await db.execute(update(organizations).where(o.id == org_id).values(**values))
    return "account_updated"


def _booking_id(obj: dict[str, Any], org_id: uuid.UUID) -> uuid.UUID | None:
    metadata = obj.get("metadata") or {}
    if metadata.get("organization_id") not in (None, str(org_id)):
        return None
    try:
        return uuid.UUID(str(metadata.get("booking_id") or obj.get("client_reference_id")))
    except ValueError:
        return None


async def _checkout_completed(db: AsyncConnection, org_id: uuid.UUID, session: dict[str, Any]) -> str:
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        return "awaiting_payment"  # an asynchronous method: async_payment_succeeded follows
    booking_id = _booking_id(session, org_id)
    if booking_id is None:
        return "unknown"
    outcome = await bookings_service.settle_paid(
        db, org_id, booking_id, amount=int(session.get("amount_total") or 0), checkout_session_id=session.get("id"),
        payment_intent_id=session.get("payment_intent"))
    if outcome == "refunded":
        await record(db, "booking.payment_refunded_automatically", organization_id=org_id, target_type="booking",
                     target_id=booking_id, changes={"reason": "no capacity left when the payment arrived",
                                                    "checkout_session": session.get("id")})
    elif outcome == "reinstated":
        await record(db, "booking.reinstated_by_payment", organization_id=org_id, target_type="booking",
                     target_id=booking_id, changes={"checkout_session": session.get("id")})
    return outcome


async def _checkout_expired(db: AsyncConnection, org_id: uuid.UUID, session: dict[str, Any]) -> str:
    booking_id = _booking_id(session, org_id)
    if booking_id is None:
        return "unknown"
    charge = await payments_service.charge_by_stripe(db, org_id, checkout_session_id=session.get("id"))
    if charge is None or charge.booking_id != booking_id:
        return "unknown"
    return "released" if await bookings_service.release_unpaid(db, org_id, booking_id) else "unchanged"


async def _charge_refunded(db: AsyncConnection, org_id: uuid.UUID, charge_obj: dict[str, Any]) -> str:
    """Records each refund once (by its Stripe id). Refunds this platform made carry the charge's
    payment id in their metadata and gave back the fee in proportion; others (made in the
    merchant's dashboard) are recorded without a fee refund."""
    p = payments_service
    charge = await p.charge_by_stripe(db, org_id, charge_id=charge_obj.get("id"),
                                      payment_intent_id=charge_obj.get("payment_intent"),
                                      booking_id=_booking_id(charge_obj, org_id))
    if charge is None:
        return "unknown"
    await db.execute(update(payments).where(payments.c.organization_id == org_id, payments.c.id == charge.id)
                     .values(stripe_charge_id=charge_obj.get("id"),
                             stripe_payment_intent_id=charge.stripe_payment_intent_id or charge_obj.get("payment_intent")))
    refunds = ((charge_obj.get("refunds") or {}).get("data") or [])
    for refund in sorted(refunds, key=lambda r: r.get("created") or 0):
        if refund.get("status") not in ("succeeded", "pending"):
            continue
        charge = await p.charge_for_booking(db, org_id, charge.booking_id)
        ours = (refund.get("metadata") or {}).get("payment_id") == str(charge.id)
        await p.record_refund(db, org_id, charge, int(refund.get("amount") or 0), stripe_refund_id=refund.get("id"),
                              fee_refunded=None if ours else 0)
    charge = await p.charge_for_booking(db, org_id, charge.booking_id)
    missing = int(charge_obj.get("amount_refunded") or 0) - charge.refunded_amount
    if missing > 0:  # refunds the event did not list
        await p.record_refund(db, org_id, charge, missing, fee_refunded=0,
                              stripe_refund_id=f"{charge_obj.get('id')}:refunded:{charge_obj.get('amount_refunded')}")
    await bookings_service.sync_payment_state(db, org_id, charge.booking_id)
    return "refunds_recorded"
