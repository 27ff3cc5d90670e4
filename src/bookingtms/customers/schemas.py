from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator
from bookingtms.http.json_fields import JsonObject


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(None, max_length=32, pattern=r"^\+?[0-9 ()\-.]{5,32}$")

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class CustomerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    first_name: str | None = Field(None, min_length=1, max_length=100)
    last_name: str | None = Field(None, min_length=1, max_length=100)
    phone: str | None = Field(None, max_length=32, pattern=r"^\+?[0-9 ()\-.]{5,32}$")
    metadata: JsonObject | None = None
