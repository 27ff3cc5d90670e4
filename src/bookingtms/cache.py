"""The process's Redis client (one per event loop), for caches, revocations and rate limits."""

from __future__ import annotations

import redis.asyncio as aioredis

from bookingtms.config import get_settings

_client: aioredis.Redis | None = None


def get_redis() -> aioredis.Redis:
    global _client
    if _client is None:
        url = get_settings().redis_url
        if not url:
            raise RuntimeError("REDIS_URL is not configured")
        _client = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)
    return _client


async def close_redis() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
