from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from bookingtms.venues.schemas import SLUG, check_timezone


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
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")

    _tz = field_validator("timezone")(check_timezone)
