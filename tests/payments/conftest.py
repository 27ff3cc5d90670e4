"""Stripe for the payment tests: settings with a test key and webhook secret, Stripe's API stubbed
at the HTTP transport (respx), events signed the way Stripe signs them, and organizations made
Stripe ones directly in the database (as the owner)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx
from sqlalchemy import text

from bookingtms.config import get_settings

SECRET_KEY = "sk_test_bookingtms_0123456789"
WEBHOOK_SECRET = "whsec_test_bookingtms_secret"
_ids = itertools.count(1)


@pytest.fixture
def stripe_settings():
    settings = get_settings()
    before = (settings.stripe_secret_key, settings.stripe_webhook_secret)
    settings.stripe_secret_key, settings.stripe_webhook_secret = SECRET_KEY, WEBHOOK_SECRET
    yield settings
    settings.stripe_secret_key, settings.stripe_webhook_secret = before


def form(request: httpx.Request) -> dict[str, str]:
    """Stripe's form-encoded body, flat: {"line_items[0][price_data][unit_amount]": "1030", ...}."""
    return dict(parse_qsl(request.content.decode(), keep_blank_values=True))


@dataclass
class StripeStub:
    """Stripe's API as the code sees it; every request is kept for the test to inspect."""

    router: respx.MockRouter
    sessions: list[dict[str, Any]] = field(default_factory=list)

    def calls_to(self, path: str) -> list[httpx.Request]:
        return [c.request for c in self.router.calls if c.request.url.path == path]


@pytest.fixture
def stripe_api(stripe_settings):
    with respx.mock(base_url="https://api.stripe.com", assert_all_called=False) as router:
        stub = StripeStub(router)

        def checkout_session(request: httpx.Request) -> httpx.Response:
            sid = f"cs_test_{next(_ids)}_{uuid.uuid4().hex[:8]}"
            stub.sessions.append({"id": sid, **form(request)})
            return httpx.Response(200, json={"id": sid, "object": "checkout.session",
                                             "url": f"https://checkout.stripe.com/c/pay/{sid}"})

        def refund(request: httpx.Request) -> httpx.Response:
            body = form(request)
            return httpx.Response(200, json={"id": f"re_{uuid.uuid4().hex[:12]}", "object": "refund",
                                             "amount": int(body["amount"]), "status": "succeeded",
                                             "metadata": {}})

        router.post("/v1/checkout/sessions").mock(side_effect=checkout_session)
        router.post("/v1/refunds").mock(side_effect=refund)
        router.post(url__regex=r"/v1/checkout/sessions/[^/]+/expire").mock(
            return_value=httpx.Response(200, json={"id": "cs_x", "object": "checkout.session", "status": "expired"}))
        router.post("/v1/accounts").mock(side_effect=lambda request: httpx.Response(
            200, json={"id": f"acct_{uuid.uuid4().hex[:16]}", "object": "account"}))
        router.post("/v1/account_links").mock(return_value=httpx.Response(200, json={
            "object": "account_link", "url": "https://connect.stripe.com/setup/e/acct_x/abc"}))
        yield stub


def make_stripe_org(owner_engine, organization_id: str, *, fee_percent: str = "2.5", charges_enabled: bool = True) -> str:
    account = f"acct_{uuid.uuid4().hex[:16]}"
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE organizations SET stripe_account_id = :a, stripe_charges_enabled = :c, "
                          "payment_provider = 'stripe', application_fee_percentage = :f WHERE id = :id"),
                     {"a": account, "c": charges_enabled, "f": fee_percent, "id": organization_id})
    return account


def sign(payload: str, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    at = at or int(time.time())
    digest = hmac.new(secret.encode(), f"{at}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event(kind: str, obj: dict[str, Any], account: str | None, event_id: str | None = None) -> str:
    return json.dumps({"id": event_id or f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind,
                       "account": account, "api_version": "2024-06-20", "created": int(time.time()),
                       "livemode": False, "pending_webhooks": 1, "data": {"object": obj}})


async def post_event(client: httpx.AsyncClient, payload: str, signature: str | None = "sign") -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature == "sign":
        headers["Stripe-Signature"] = sign(payload)
    elif signature is not None:
        headers["Stripe-Signature"] = signature
    return await client.post("/v1/webhooks/stripe", content=payload, headers=headers)


def completed(session_id: str, booking_id: str, org_id: str, amount: int, payment_intent: str) -> dict[str, Any]:
    return {"id": session_id, "object": "checkout.session", "amount_total": amount, "currency": "usd",
            "payment_status": "paid", "status": "complete", "payment_intent": payment_intent,
            "client_reference_id": booking_id, "metadata": {"booking_id": booking_id, "organization_id": org_id}}


def expired(session_id: str, booking_id: str, org_id: str) -> dict[str, Any]:
    return {"id": session_id, "object": "checkout.session", "payment_status": "unpaid", "status": "expired",
            "client_reference_id": booking_id, "metadata": {"booking_id": booking_id, "organization_id": org_id}}
