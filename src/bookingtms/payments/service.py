"""Payment records: one `charge` row per booking, and one `refund` row per refund pointing at its
charge (`charge_id`), with the charge's `refunded_amount` / `application_fee_refunded` kept equal
to the sum of its refunds. The providers (providers.py) move the money; this module writes down
what moved.

Money is integer minor units. The platform's application fee is
`application_fee_percentage` % of the booking's total, rounded half up to a whole minor unit
(2.5 % of 1 010 = 25.25 -> 25; 2.5 % of 1 030 = 25.75 -> 26; 5 % of 10 = 0.5 -> 1). A refund of
part of a charge gives back the same share of the fee, again rounded half up, computed on the
running total (so refunds that add up to the whole charge give back exactly the whole fee)."""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.models import organizations, payments

OFFLINE = "offline"
STRIPE = "stripe"


def application_fee(total: int, percentage: Decimal | float | int | str | None) -> int:
    """The platform's fee on `total` minor units: `percentage` % rounded half up."""
    if not percentage or total <= 0:
        return 0
    fee = (Decimal(total) * Decimal(str(percentage)) / Decimal(100)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return min(int(fee), total)


def proportional_fee(fee: int, charge_amount: int, refunded_total: int) -> int:
    """The share of `fee` that belongs to `refunded_total` of `charge_amount`, rounded half up."""
    if charge_amount <= 0 or fee <= 0:
        return 0
    if refunded_total >= charge_amount:
        return fee
    share = (Decimal(fee) * Decimal(refunded_total) / Decimal(charge_amount)).quantize(Decimal(1), ROUND_HALF_UP)
    return min(int(share), fee)


_INSERT_PAYMENT = insert(payments)  # built once: every widget checkout runs it


async def record_offline_charge(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID, amount: int,
                                currency: str) -> dict:
    await db.execute(_INSERT_PAYMENT, dict(
        organization_id=org_id, booking_id=booking_id, provider=OFFLINE, kind="charge", amount=amount,
        currency=currency, status="pending", net_to_merchant=amount))
    return {"provider": OFFLINE, "status": "pending", "checkout_url": None}


async def record_stripe_charge(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID, amount: int,
                               currency: str, fee: int, checkout_session_id: str) -> uuid.UUID:
    return (await db.execute(insert(payments).values(
        organization_id=org_id, booking_id=booking_id, provider=STRIPE, kind="charge", amount=amount,
        currency=currency, status="pending", application_fee_amount=fee, net_to_merchant=amount - fee,
        stripe_checkout_session_id=checkout_session_id).returning(payments.c.id))).scalar_one()


async def void_pending(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID) -> None:
    """A cancelled booking's unpaid charges will never be collected."""
    await db.execute(update(payments).where(
        payments.c.organization_id == org_id, payments.c.booking_id == booking_id, payments.c.kind == "charge",
        payments.c.status == "pending").values(status="cancelled"))


async def charge_for_booking(db: AsyncConnection, org_id: uuid.UUID, booking_id: uuid.UUID, *, lock: bool = True):
    """The booking's charge (the newest if several), locked for the caller's changes."""
    query = (select(payments).where(payments.c.organization_id == org_id, payments.c.booking_id == booking_id,
                                    payments.c.kind == "charge")
             .order_by(payments.c.created_at.desc()).limit(1))
    if lock:
        query = query.with_for_update()
    return (await db.execute(query)).first()


async def charge_by_stripe(db: AsyncConnection, org_id: uuid.UUID, *, checkout_session_id: str | None = None,
                           payment_intent_id: str | None = None, charge_id: str | None = None,
                           booking_id: uuid.UUID | None = None):
    """A Stripe charge row found by any of Stripe's ids (or our booking id), locked."""
    p = payments.c
    for column, value in ((p.stripe_checkout_session_id, checkout_session_id), (p.stripe_charge_id, charge_id),
                          (p.stripe_payment_intent_id, payment_intent_id), (p.booking_id, booking_id)):
        if value is None:
            continue
        row = (await db.execute(select(payments).where(
            p.organization_id == org_id, p.kind == "charge", p.provider == STRIPE, column == value)
            .order_by(p.created_at.desc()).limit(1).with_for_update())).first()
        if row is not None:
            return row
    return None


async def mark_charge_succeeded(db: AsyncConnection, org_id: uuid.UUID, charge, *, amount: int,
                                payment_intent_id: str | None) -> bool:
    """Records a charge as paid once and adds it to the organization's totals (gross: refunds are
    their own rows and do not lower the totals). False if it was already recorded."""
    done = (await db.execute(update(payments).where(
        payments.c.organization_id == org_id, payments.c.id == charge.id, payments.c.status != "succeeded"
    ).values(status="succeeded", amount=amount, net_to_merchant=amount - charge.application_fee_amount,
             stripe_payment_intent_id=payment_intent_id or charge.stripe_payment_intent_id,
             updated_at=text("now()")).returning(payments.c.id))).first()
    if done is None:
        return False
    await db.execute(update(organizations).where(organizations.c.id == org_id).values(
        total_volume_processed=organizations.c.total_volume_processed + amount,
        total_application_fees=organizations.c.total_application_fees + charge.application_fee_amount))
    return True


_INSERT_REFUND = text("""
    INSERT INTO payments (organization_id, booking_id, provider, kind, amount, currency, status,
                          application_fee_refunded, stripe_refund_id, charge_id, stripe_payment_intent_id,
                          stripe_charge_id, net_to_merchant)
    VALUES (:org, :booking, :provider, 'refund', :amount, :currency, :status, :fee, :refund_id, :charge, :pi,
            :stripe_charge, :net)
    ON CONFLICT (organization_id, stripe_refund_id) WHERE stripe_refund_id IS NOT NULL DO NOTHING
    RETURNING id
""")


async def record_refund(db: AsyncConnection, org_id: uuid.UUID, charge, amount: int, *,
                        stripe_refund_id: str | None = None, fee_refunded: int | None = None,
                        status: str = "succeeded") -> dict[str, Any] | None:
    """A refund row against `charge` (locked by the caller), once per Stripe refund id, and the
    charge's refunded totals. Returns {amount, application_fee_refunded} or None if already known."""
    amount = min(amount, charge.amount - charge.refunded_amount)
    if amount <= 0:
        return None
    refunded_after = charge.refunded_amount + amount
    if fee_refunded is None:
        fee_refunded = proportional_fee(charge.application_fee_amount, charge.amount, refunded_after) \
            - charge.application_fee_refunded
    fee_refunded = max(0, min(fee_refunded, charge.application_fee_amount - charge.application_fee_refunded))
    row = (await db.execute(_INSERT_REFUND, {
        "org": org_id, "booking": charge.booking_id, "provider": charge.provider, "amount": amount,
        "currency": charge.currency, "status": status, "fee": fee_refunded, "refund_id": stripe_refund_id,
        "charge": charge.id, "pi": charge.stripe_payment_intent_id, "stripe_charge": charge.stripe_charge_id,
        "net": -(amount - fee_refunded)})).first()
    if row is None:
        return None
    await db.execute(update(payments).where(payments.c.organization_id == org_id, payments.c.id == charge.id).values(
        refunded_amount=payments.c.refunded_amount + amount,
        application_fee_refunded=payments.c.application_fee_refunded + fee_refunded, updated_at=text("now()")))
    return {"amount": amount, "application_fee_refunded": fee_refunded}


async def start_stripe_onboarding(db: AsyncConnection, org_id: uuid.UUID, email: str) -> str:
    """Stripe Connect onboarding: creates the organization's connected account if it has none and
    returns a fresh account link to Stripe's onboarding form (POST /v1/payments/stripe/onboarding
    and the settings page)."""
    from bookingtms.audit.service import record
    from bookingtms.payments import providers

    o = organizations.c
    row = (await db.execute(select(o.stripe_account_id).where(o.id == org_id).with_for_update())).one()
    account_id = row.stripe_account_id
    if not account_id:
        account_id = await providers.create_connected_account(org_id, email, None)
        await db.execute(update(organizations).where(o.id == org_id).values(stripe_account_id=account_id))
        await record(db, "payments.stripe_account_created", organization_id=org_id, target_type="organization",
                     target_id=org_id, changes={"stripe_account_id": account_id})
    return await providers.create_account_link(org_id, account_id, uuid.uuid4())


async def stripe_status(db: AsyncConnection, org_id: uuid.UUID) -> str:
    """`connected` (Stripe enabled charges), `incomplete` (an account whose onboarding is not
    finished) or `not_connected`."""
    o = organizations.c
    row = (await db.execute(select(o.stripe_account_id, o.stripe_charges_enabled).where(o.id == org_id))).first()
    if row is None or not row.stripe_account_id:
        return "not_connected"
    return "connected" if row.stripe_charges_enabled else "incomplete"
