"""Stripe stubbed at the transport, as the payment tests do it (their fixtures, reused)."""

from tests.payments.conftest import stripe_api, stripe_settings  # noqa: F401
