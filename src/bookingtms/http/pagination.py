"""Keyset pagination: `{"items": [...], "next_cursor": ...}` with `?limit=&cursor=`."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import Query

from bookingtms.errors import ValidationFailed
from bookingtms.http.params import on_the_loop


class PageParams:
    def __init__(self, limit: int = Query(50, ge=1, le=200), cursor: str | None = Query(None, max_length=512)):
        self.limit = limit
        self.after = decode_cursor(cursor) if cursor else None


page_params = on_the_loop(PageParams)  # Depends(page_params)


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("The cursor is not one this API gave out.", code="invalid_cursor", field="cursor") from None
    if not isinstance(values, list) or len(values) != 2:
        raise ValidationFailed("The cursor is not one this API gave out.", code="invalid_cursor", field="cursor")
    return values


def keyset(after: list[Any] | None, first: type = str) -> tuple[Any, uuid.UUID] | None:
    """The cursor's (sort value, id), typed; a tampered cursor is a 422, never a 500."""
    if after is None:
        return None
    try:
        value = datetime.fromisoformat(after[0]) if first is datetime else first(after[0])
        return value, uuid.UUID(str(after[1]))
    except (TypeError, ValueError):
        raise ValidationFailed("The cursor is not one this API gave out.", code="invalid_cursor", field="cursor") from None


def page(rows: list[Any], limit: int | None, key) -> dict[str, Any]:
    """`rows` was fetched with limit + 1 (or whole, with limit None); `key(row)` gives the two sort
    values of a row."""
    if limit is None:
        return {"items": rows, "next_cursor": None}
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": encode_cursor(list(key(rows[-1]))) if more and rows else None}
