from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from bookingtms.activities.schedule import Schedule, check_day
from bookingtms.http.json_fields import JsonObject

MAX_PRICE = 100_000_000  # minor units: a million in major units is beyond any timed experience
CURRENCY = r"^[A-Z]{3}$"


class CancellationPolicy(BaseModel):
    """Full refund up to `full_refund_hours` before the start; `partial_refund_percent` % up to
    `partial_refund_hours` before it (a second, later window); none after. Stored (and snapshotted
    on each booking) without the keys left unset."""

    model_config = ConfigDict(extra="forbid")

    full_refund_hours: int = Field(24, ge=0, le=8760, description="Hours before start up to which a full refund applies")
    partial_refund_hours: int | None = Field(
        None, ge=0, le=8760, description="Hours before start up to which the partial refund applies "
                                         "(less than full_refund_hours)")
    partial_refund_percent: int | None = Field(
        None, ge=0, le=100, description="Percentage refunded within the partial window")

    @model_validator(mode="after")
    def _windows(self) -> "CancellationPolicy":
        if (self.partial_refund_hours is None) != (self.partial_refund_percent is None):
            raise ValueError("partial_refund_hours and partial_refund_percent go together")
        if self.partial_refund_hours is not None and self.partial_refund_hours > self.full_refund_hours:
            raise ValueError("partial_refund_hours must not exceed full_refund_hours")
        return self

    @model_serializer(mode="wrap")
    def _without_unset(self, handler) -> dict[str, int]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ActivityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    venue_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10_000)
    category: str = Field("", max_length=100)
    difficulty: str | None = Field(None, max_length=50)
    duration_minutes: int = Field(ge=1, le=1440)
    capacity: int = Field(ge=1, le=10_000)
    min_players: int = Field(1, ge=1, le=10_000)
    max_players: int | None = Field(None, ge=1, le=10_000)
    price_amount: int = Field(ge=0, le=MAX_PRICE)
    child_price_amount: int | None = Field(None, ge=0, le=MAX_PRICE)
    currency: str = Field("USD", pattern=CURRENCY)
    schedule: Schedule = Field(default_factory=Schedule)
    cancellation_policy: CancellationPolicy = Field(default_factory=CancellationPolicy)
    is_active: bool = True
    settings: JsonObject = Field(default_factory=dict)

    @model_validator(mode="after")
    def _players(self) -> "ActivityCreate":
        if self.max_players is None:
            self.max_players = self.capacity
        if not self.min_players <= self.max_players <= self.capacity:
            raise ValueError("need min_players <= max_players <= capacity")
        return self


class ActivityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # API.md lists it among the activity's fields: the venue it is at is accepted, another one is
    # refused (its sessions, bookings and schedule belong to the venue and its time zone).
    venue_id: uuid.UUID | None = None
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    category: str | None = Field(None, max_length=100)
    difficulty: str | None = Field(None, max_length=50)
    duration_minutes: int | None = Field(None, ge=1, le=1440)
    capacity: int | None = Field(None, ge=1, le=10_000)
    min_players: int | None = Field(None, ge=1, le=10_000)
    max_players: int | None = Field(None, ge=1, le=10_000)
    price_amount: int | None = Field(None, ge=0, le=MAX_PRICE)
    child_price_amount: int | None = Field(None, ge=0, le=MAX_PRICE)
    currency: str | None = Field(None, pattern=CURRENCY)
    schedule: Schedule | None = None
    cancellation_policy: CancellationPolicy | None = None
    is_active: bool | None = None
    settings: JsonObject | None = None


class GenerateSessions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: date = Field(alias="from")
    to: date

    _bounds = field_validator("from_", "to")(check_day)

    @model_validator(mode="after")
    def _span(self) -> "GenerateSessions":
        if self.to < self.from_:
            raise ValueError("'to' is before 'from'")
        if (self.to - self.from_).days > 366:
            raise ValueError("at most 366 days at a time")
        return self
