from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OrgRole = Literal["super-admin", "org-admin", "admin", "manager", "staff"]
PaymentProvider = Literal["offline", "stripe"]


class OrganizationSettingsUpdate(BaseModel):
    """Only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200, description="The organization's display name.")
    require_mfa_for: list[OrgRole] | None = Field(
        None, max_length=5, description="Roles whose members must use two-step verification (TOTP) to sign in; "
                                        "those not enrolled yet get a token that can only enrol.")
    payment_provider: PaymentProvider | None = Field(
        None, description="Who takes payments at checkout: `offline` (pay at the venue) or `stripe` (card payment "
                          "on the organization's connected Stripe account; only once Stripe onboarding has enabled "
                          "charges, else 409 `stripe_not_ready`).")
    sms_reminders: bool | None = Field(
        None, description="Send customers an SMS reminder (as well as the email) 24 hours before their session, "
                          "when they gave a phone number.")


class OrganizationSettings(BaseModel):
    name: str
    require_mfa_for: list[OrgRole]
    payment_provider: PaymentProvider
    sms_reminders: bool
    stripe_charges_enabled: bool = Field(description="Read-only: Stripe onboarding finished and charges enabled.")
