from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

OrgRole = Literal["super-admin", "org-admin", "admin", "manager", "staff"]


class UserInvite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr
    full_name: str = Field(min_length=1, max_length=200)
    role: OrgRole

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class UserUpdate(BaseModel):
    """Absent fields are left alone; none of them may be null."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: OrgRole | None = None
    full_name: str | None = Field(None, min_length=1, max_length=200)
    is_active: bool | None = None

    @field_validator("role", "full_name", "is_active")
    @classmethod
    def _not_null(cls, value):  # runs only for fields that were sent
        if value is None:
            raise ValueError("may not be null; leave the field out to keep it")
        return value
