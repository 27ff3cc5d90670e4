"""JSON responses rendered by orjson (UUIDs, datetimes and dates natively; Decimal as a number).

A hot endpoint returns `OrjsonResponse(...)` itself: FastAPI would first walk a returned dict with
its jsonable_encoder, which costs more than rendering it."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import JSONResponse


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):  # asyncpg's UUID subclasses uuid.UUID
        return str(value)
    if isinstance(value, Decimal):  # a number, as FastAPI's own encoder writes it (SUM() of integers)
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(content: Any) -> bytes:
    try:
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # orjson stops at 64-bit integers; the standard library writes any size. Input validation
        # keeps such numbers out, so this only serves data stored before that check.
        return json.dumps(content, default=lambda v: _default(v) if isinstance(v, (Decimal, uuid.UUID)) else str(v),
                          separators=(",", ":"), ensure_ascii=False).encode()


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)


class ProblemResponse(OrjsonResponse):
    media_type = "application/problem+json"
