from __future__ import annotations

import uuid
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

CURRENCY = r"^[A-Z]{3}$"
CODE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


def _upper(value: str | None) -> str | None:
    return value.strip().upper() if isinstance(value, str) else value


class PromoCodeCreate(BaseModel):
    """`percent`: discount_value is 1-100 (% of the subtotal); `amount`: discount_value is in minor
    units of `currency`. Codes are case-insensitive (stored upper case)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, pattern=CODE)
    description: str = Field("", max_length=500)
    discount_type: Literal["percent", "amount"]
    discount_value: int = Field(gt=0, le=100_000_000)
    currency: str | None = Field(None, pattern=CURRENCY)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    max_redemptions: int | None = Field(None, gt=0, le=10_000_000)
    activity_ids: list[uuid.UUID] = Field(default_factory=list, max_length=200)
    is_active: bool = True

    _code_upper = field_validator("code", mode="after")(_upper)

    @model_validator(mode="after")
    def _consistent(self) -> PromoCodeCreate:
        from bookingtms.errors import ValidationFailed

        try:
            check_rules(self.discount_type, self.discount_value, self.currency, self.valid_from, self.valid_until)
        except ValidationFailed as exc:
            raise ValueError(exc.detail) from None
        return self


class PromoCodeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(None, min_length=1, max_length=64, pattern=CODE)
    description: str | None = Field(None, max_length=500)
    discount_type: Literal["percent", "amount"] | None = None
    discount_value: int | None = Field(None, gt=0, le=100_000_000)
    currency: str | None = Field(None, pattern=CURRENCY)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    max_redemptions: int | None = Field(None, gt=0, le=10_000_000)
    activity_ids: list[uuid.UUID] | None = Field(None, max_length=200)
    is_active: bool | None = None

    _code_upper = field_validator("code", mode="after")(_upper)


def check_rules(discount_type, discount_value, currency, valid_from, valid_until) -> None:
    """The rules a promo code obeys as a whole (create, and an update merged onto the stored row)."""
    from bookingtms.errors import ValidationFailed

    if discount_type == "percent" and discount_value > 100:
        raise ValidationFailed("A percent discount is between 1 and 100.", field="discount_value")
    if discount_type == "amount" and not currency:
        raise ValidationFailed("An amount discount needs its currency.", field="currency")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise ValidationFailed("valid_until must be after valid_from.", field="valid_until")
