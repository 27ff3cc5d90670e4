from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from bookingtms.venues.schemas import SLUG, check_timezone
from bookingtms.http.json_fields import JsonObject

INT32 = 2_147_483_647
MONEY = 9_000_000_000_000_000  # fits bigint with room
CURRENCY = r"^[A-Z]{3}$"
FLAG_NAME = r"^[a-z0-9][a-z0-9_.:-]{0,99}$"
ORG_STATUSES = ("active", "suspended")
SUBSCRIPTION_STATUSES = ("trial", "active", "past_due", "suspended", "cancelled")


def _no_nulls(model: BaseModel, nullable: set[str]) -> BaseModel:
    """PATCH bodies: an absent field is left alone; `null` is only allowed where it means something."""
    for name in model.model_fields_set - nullable:
        if getattr(model, name) is None:
            raise ValueError(f"'{name}' may not be null")
    return model


class OwnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    full_name: str = Field(min_length=1, max_length=200)
    password: str | None = Field(None, max_length=1024)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(None, pattern=SLUG)
    plan: str = Field("free", min_length=1, max_length=64)
    owner: OwnerIn
    timezone: str = Field("UTC", description="The default venue's IANA time zone")
    currency: str = Field("USD", pattern=CURRENCY)

    _tz = field_validator("timezone")(check_timezone)


class OrganizationUpdate(BaseModel):
    """What the platform may change about an organization. `status` switches the service on and
    off (a suspended organization's widget refuses new holds); `subscription_status` is the
    billing state and moves only along the allowed transitions."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "suspended"] | None = None
    plan: str | None = Field(None, min_length=1, max_length=64, description="a plan's slug")
    subscription_status: Literal["trial", "active", "past_due", "suspended", "cancelled"] | None = None
    trial_ends_at: AwareDatetime | None = None
    application_fee_percentage: Decimal | None = Field(None, ge=0, le=100, max_digits=5, decimal_places=2)

    @model_validator(mode="after")
    def _nulls(self):
        return _no_nulls(self, {"trial_ends_at"})


class PlanLimits(BaseModel):
    max_venues: int | None = Field(None, gt=0, le=INT32, description="null: unlimited")
    max_staff: int | None = Field(None, gt=0, le=INT32, description="null: unlimited (active users)")
    max_bookings: int | None = Field(None, gt=0, le=INT32, description="per calendar month (UTC); null: unlimited")


class PlanCreate(PlanLimits):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    slug: str = Field(pattern=SLUG)
    price_monthly: int = Field(0, ge=0, le=MONEY, description="minor units (cents)")
    currency: str = Field("USD", pattern=CURRENCY)
    features: JsonObject = Field(default_factory=dict)
    is_active: bool = True


class PlanUpdate(PlanLimits):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    slug: str | None = Field(None, pattern=SLUG)
    price_monthly: int | None = Field(None, ge=0, le=MONEY)
    currency: str | None = Field(None, pattern=CURRENCY)
    features: JsonObject | None = None
    is_active: bool | None = None

    @model_validator(mode="after")
    def _nulls(self):
        return _no_nulls(self, {"max_venues", "max_staff", "max_bookings"})


class FlagFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("org_whitelist", check_fields=False)
    @classmethod
    def _dedupe(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        return None if value is None else list(dict.fromkeys(value))


class FeatureFlagCreate(FlagFields):
    name: str = Field(pattern=FLAG_NAME, description="the name code asks for; cannot change later")
    description: str = Field("", max_length=1000)
    enabled: bool = False
    rollout_percent: int = Field(0, ge=0, le=100)
    org_whitelist: list[uuid.UUID] = Field(default_factory=list, max_length=10_000)


class FeatureFlagUpdate(FlagFields):
    description: str | None = Field(None, max_length=1000)
    enabled: bool | None = None
    rollout_percent: int | None = Field(None, ge=0, le=100)
    org_whitelist: list[uuid.UUID] | None = Field(None, max_length=10_000)

    @model_validator(mode="after")
    def _nulls(self):
        return _no_nulls(self, set())


class AccessGrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500, description="why the platform needs to act in this organization")
    duration_minutes: int = Field(ge=1, le=1440)

    @field_validator("reason")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if len(value) < 3:
            raise ValueError("give a reason of at least 3 characters")
        return value
