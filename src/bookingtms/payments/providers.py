"""Payment providers behind one interface, chosen by `organizations.payment_provider`:

- `offline` (built in): the customer pays at the venue; checkout confirms the booking at once with a
  pending charge; refunds are recorded only (the venue hands the money back).
- `stripe` (Stripe Connect): checkout opens a Checkout Session on the organization's connected
  account (direct charge, `Stripe-Account` header) with the platform's application fee; the booking
  stays `pending_payment` until the `checkout.session.completed` webhook. Refunds go through Stripe
  on the connected account with `refund_application_fee`.

Only this package imports `stripe`. Every write call to Stripe carries an idempotency key made from
our own ids, so a retried call never charges, refunds or creates twice."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.bookings import links
from bookingtms.config import get_settings
from bookingtms.errors import Conflict, ServiceUnavailable
from bookingtms.models import organizations
from bookingtms.payments import service

_clients: dict[str, stripe.StripeClient] = {}


def stripe_client() -> stripe.StripeClient:
    key = get_settings().stripe_secret_key
    if not key:
        raise Conflict("Card payments are not configured on this platform.", code="payments_unavailable")
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = stripe.StripeClient(key, http_client=stripe.HTTPXClient(), max_network_retries=2)
    return client


def _provider_error(exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"The payment provider could not be reached or refused: {exc}",
                              code="payment_provider_error")


@dataclass(frozen=True)
class Organization:
    id: uuid.UUID
    payment_provider: str
    stripe_account_id: str | None
    stripe_charges_enabled: bool
    application_fee_percentage: Any


@dataclass(frozen=True)
class CheckoutRequest:
    booking_id: uuid.UUID
    reference: str
    amount: int
    currency: str
    description: str
    customer_email: str
    expires_at: datetime


class Provider(Protocol):
    name: str

    async def start_checkout(self, db: AsyncConnection, org: Organization, req: CheckoutRequest) -> dict[str, Any]:
        """Records the booking's charge; returns {provider, status, checkout_url}."""

    async def refund(self, db: AsyncConnection, org: Organization, charge, amount: int,
                     idempotency_key: str) -> dict[str, Any] | None:
        """Gives back `amount` of `charge` (locked) and records it; None if nothing was refunded."""


class OfflineProvider:
    name = service.OFFLINE
    confirms_at_checkout = True

    async def start_checkout(self, db, org, req):
        return await service.record_offline_charge(db, org.id, req.booking_id, req.amount, req.currency)

    async def refund(self, db, org, charge, amount, idempotency_key):
        return await service.record_refund(db, org.id, charge, amount)


class StripeProvider:
    name = service.STRIPE
    confirms_at_checkout = False

    def check_available(self, org: Organization) -> None:
        if not (org.stripe_account_id and org.stripe_charges_enabled and get_settings().stripe_secret_key):
            raise Conflict("This venue cannot take card payments right now; please contact the venue.",
                           code="payments_unavailable")

    async def start_checkout(self, db, org, req):
        self.check_available(org)
        fee = service.application_fee(req.amount, org.application_fee_percentage)
        manage = links.manage_url(org.id, req.booking_id, req.customer_email)
        metadata = {"booking_id": str(req.booking_id), "organization_id": str(org.id), "reference": req.reference}
        try:
            session = await stripe_client().v1.checkout.sessions.create_async(params={
                "mode": "payment",
                "line_items": [{"quantity": 1, "price_data": {
                    "currency": req.currency.lower(), "unit_amount": req.amount,
                    "product_data": {"name": req.description[:250]}}}],
                "payment_intent_data": {"application_fee_amount": fee, "metadata": metadata},
                "metadata": metadata,
                "client_reference_id": str(req.booking_id),
                "customer_email": req.customer_email,
                "expires_at": int(req.expires_at.timestamp()),
                # Back to the customer's page of this booking (web/portal.py), which says how the payment went.
                "success_url": f"{manage}?payment=success",
                "cancel_url": f"{manage}?payment=cancelled",
            }, options={"stripe_account": org.stripe_account_id,
                        "idempotency_key": f"bookingtms-checkout-{req.booking_id}"})
        except stripe.StripeError as exc:
            raise _provider_error(exc) from None
        await service.record_stripe_charge(db, org.id, req.booking_id, req.amount, req.currency, fee, session.id)
        return {"provider": self.name, "status": "pending", "checkout_url": session.url}

    async def refund(self, db, org, charge, amount, idempotency_key):
        amount = min(amount, charge.amount - charge.refunded_amount)
        if amount <= 0:
            return None
        if not charge.stripe_payment_intent_id and not charge.stripe_charge_id:
            raise Conflict("The payment's charge is not known yet; try again shortly.", code="payment_not_settled")
        params: dict[str, Any] = {"amount": amount, "refund_application_fee": True,
                                  "metadata": {"booking_id": str(charge.booking_id), "payment_id": str(charge.id)}}
        if charge.stripe_charge_id:
            params["charge"] = charge.stripe_charge_id
        else:
            params["payment_intent"] = charge.stripe_payment_intent_id
        try:
            refund = await stripe_client().v1.refunds.create_async(params=params, options={
                "stripe_account": org.stripe_account_id, "idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise _provider_error(exc) from None
        return await service.record_refund(db, org.id, charge, amount, stripe_refund_id=refund.id,
                                           status="pending" if refund.status == "pending" else "succeeded")


    async def cancel_checkout(self, org: Organization, charge) -> None:
        """Expires the Checkout Session of a booking cancelled before payment. Best effort: a
        session already completed or expired is refused by Stripe, and a payment that still
        arrives is refunded automatically."""
        if not (org.stripe_account_id and get_settings().stripe_secret_key):
            return
        try:
            await stripe_client().v1.checkout.sessions.expire_async(charge.stripe_checkout_session_id, options={
                "stripe_account": org.stripe_account_id,
                "idempotency_key": f"bookingtms-checkout-expire-{charge.booking_id}"})
        except stripe.StripeError:
            pass


OFFLINE = OfflineProvider()
STRIPE = StripeProvider()
PROVIDERS: dict[str, Any] = {OFFLINE.name: OFFLINE, STRIPE.name: STRIPE}


async def organization(db: AsyncConnection, org_id: uuid.UUID) -> Organization:
    o = organizations.c
    row = (await db.execute(select(o.id, o.payment_provider, o.stripe_account_id, o.stripe_charges_enabled,
                                   o.application_fee_percentage).where(o.id == org_id))).one()
    return Organization(id=row.id, payment_provider=row.payment_provider or service.OFFLINE,
                        stripe_account_id=row.stripe_account_id,
                        stripe_charges_enabled=bool(row.stripe_charges_enabled),
                        application_fee_percentage=row.application_fee_percentage)


def provider_named(name: str | None):
    return PROVIDERS.get(name or service.OFFLINE, OFFLINE)


# ------------------------------------------------------------------------------------------------
# Connect onboarding
# ------------------------------------------------------------------------------------------------
async def create_connected_account(org_id: uuid.UUID, email: str | None, country: str | None) -> str:
    params: dict[str, Any] = {"type": "express", "metadata": {"organization_id": str(org_id)},
                              "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}}}
    if email:
        params["email"] = email
    if country:
        params["country"] = country
    try:
        account = await stripe_client().v1.accounts.create_async(
            params=params, options={"idempotency_key": f"bookingtms-account-{org_id}"})
    except stripe.StripeError as exc:
        raise _provider_error(exc) from None
    return account.id


async def create_account_link(org_id: uuid.UUID, account_id: str, link_id: uuid.UUID) -> str:
    base = get_settings().base_url.rstrip("/")
    try:
        link = await stripe_client().v1.account_links.create_async(params={
            "account": account_id, "type": "account_onboarding",
            "refresh_url": f"{base}/admin/settings?stripe=refresh",
            "return_url": f"{base}/admin/settings?stripe=return",
        }, options={"idempotency_key": f"bookingtms-account-link-{org_id}-{link_id}"})
    except stripe.StripeError as exc:
        raise _provider_error(exc) from None
    return link.url


def construct_event(payload: bytes, signature: str | None, secret: str):
    """The verified event, or ValueError if the signature (or payload) is not Stripe's."""
    if not signature:
        raise ValueError("missing Stripe-Signature")
    try:
        return stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError as exc:
        raise ValueError(str(exc)) from None
