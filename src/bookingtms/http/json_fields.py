"""Free-form JSON objects accepted from clients (settings, metadata, features), bounded so that
whatever is stored can always be read back: integers within 64 bits, finite numbers, limited
depth and size."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator

MAX_DEPTH = 8
MAX_ITEMS = 500
INT64 = 2**63


def _check(value: Any, depth: int = 0) -> int:
    """Walks `value`; returns how many items it holds; raises ValueError on what cannot be kept."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return 1
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise ValueError("integers must fit in 64 bits")
        return 1
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
        return 1
    items = value.values() if isinstance(value, dict) else value
    return 1 + sum(_check(item, depth + 1) for item in items)


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    if _check(value) > MAX_ITEMS:
        raise ValueError(f"more than {MAX_ITEMS} values")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_bounded)]
