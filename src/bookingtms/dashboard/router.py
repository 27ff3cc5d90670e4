"""GET /v1/dashboard/stats. (Being built: issue 5.)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"])
