"""GET /v1/public/venues/{embed_key}/events. (Being built: issue 5.)"""

from __future__ import annotations

from fastapi import APIRouter

public_router = APIRouter(prefix="/v1/public/venues", tags=["public"])


async def start() -> None:
    """Starts this process's LISTEN connection (called from the app's lifespan)."""


async def stop() -> None:
    """Closes open streams and the LISTEN connection."""
