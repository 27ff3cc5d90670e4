from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from bookingtms.customers.schemas import CustomerIn


class HoldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: uuid.UUID
    spots: int = Field(ge=1, le=10_000)
    customer_email: EmailStr

    @field_validator("customer_email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class Checkout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: CustomerIn
    promo_code: str | None = Field(None, min_length=1, max_length=64)
