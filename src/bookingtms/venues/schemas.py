from __future__ import annotations

from functools import lru_cache
from typing import Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator
from bookingtms.http.json_fields import JsonObject

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"


@lru_cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(value: str) -> str:
    if value not in _zones():
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. 'America/New_York')")
    return value


class VenueFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field("", max_length=500)
    city: str = Field("", max_length=200)
    state: str = Field("", max_length=200)
    zip: str = Field("", max_length=32)
    country: str = Field("", max_length=64)
    settings: JsonObject = Field(default_factory=dict)
    operating_hours: JsonObject = Field(default_factory=dict)


class VenueCreate(VenueFields):
    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(None, pattern=SLUG)
    timezone: str
    status: Literal["active", "inactive"] = "active"  # inactive: set up now, opened to the public later

    _tz = field_validator("timezone")(check_timezone)


class VenueUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    slug: str | None = Field(None, pattern=SLUG)
    timezone: str | None = None
    address: str | None = Field(None, max_length=500)
    city: str | None = Field(None, max_length=200)
    state: str | None = Field(None, max_length=200)
    zip: str | None = Field(None, max_length=32)
    country: str | None = Field(None, max_length=64)
    settings: JsonObject | None = None
    operating_hours: JsonObject | None = None
    status: Literal["active", "inactive"] | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)
