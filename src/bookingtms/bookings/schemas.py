from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from bookingtms.customers.schemas import CustomerIn


class StaffBookingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: uuid.UUID
    guest_count: int = Field(ge=1, le=10_000)
    customer: CustomerIn
    notes: str | None = Field(None, max_length=2000)


class StaffCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)
    refund: Literal["policy", "full", "none"] = "policy"


class CustomerCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
