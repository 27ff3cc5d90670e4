"""Reading HTML forms: every value as the user typed it, with the field named when it is wrong."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from bookingtms.errors import ValidationFailed

MAX_FIELD = 10_000


def invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, field=field, errors=[{"field": field, "message": message}])


@dataclass
class Form:
    data: FormData

    def text(self, name: str, *, strip: bool = True, max_length: int = MAX_FIELD) -> str:
        value = self.data.get(name)
        if not isinstance(value, str):
            return ""
        if len(value) > max_length:
            raise invalid(name, f"At most {max_length} characters.")
        return value.strip() if strip else value

    def optional(self, name: str, **kw) -> str | None:
        return self.text(name, **kw) or None

    def all(self, name: str) -> list[str]:
        return [v.strip() for v in self.data.getlist(name) if isinstance(v, str) and v.strip()]

    def integer(self, name: str, *, minimum: int | None = None, maximum: int | None = None,
                default: int | None = None) -> int | None:
        raw = self.text(name)
        if raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise invalid(name, "Enter a whole number.") from None
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            raise invalid(name, f"Enter a number from {minimum} to {maximum}." if maximum is not None
                          else f"Enter a number of at least {minimum}.")
        return value

    def money(self, name: str) -> int | None:
        """'12.50' -> 1250 minor units."""
        raw = self.text(name).replace(",", "")
        if raw == "":
            return None
        try:
            whole, _, cents = raw.partition(".")
            if len(cents) > 2 or not whole.lstrip("-").isdigit() and whole not in ("", "-"):
                raise ValueError
            value = int(whole or "0") * 100 + int((cents + "00")[:2] if cents else "0")
        except ValueError:
            raise invalid(name, "Enter an amount like 25 or 25.50.") from None
        if value < 0:
            raise invalid(name, "The amount cannot be negative.")
        return value

    def day(self, name: str) -> date | None:
        raw = self.text(name)
        if raw == "":
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise invalid(name, "Enter a date as YYYY-MM-DD.") from None

    def uuid(self, name: str) -> uuid.UUID | None:
        raw = self.text(name)
        if raw == "":
            return None
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise invalid(name, "Choose one from the list.") from None

    def checked(self, name: str) -> bool:
        return self.text(name) in ("on", "true", "1", "yes")

    def file(self, name: str) -> UploadFile | None:
        value = self.data.get(name)
        return value if isinstance(value, UploadFile) and value.filename else None


async def form_data(request: Request) -> Form:
    """The posted form (cached by Starlette, so the CSRF check has already parsed it)."""
    try:
        return Form(await request.form(max_files=2, max_fields=200))
    except Exception as exc:  # a malformed multipart body is the client's mistake
        if isinstance(exc, ValidationFailed):
            raise
        raise ValidationFailed("The form could not be read; send it again.", code="malformed_form") from None
