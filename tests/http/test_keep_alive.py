"""The server keeps an idle connection open longer than clients keep it in their pools
(BOOKINGTMS_KEEP_ALIVE_SECONDS, 75 s). If it closed first, a request sent on the connection just as
the server closed it would get no answer: uvicorn's default of 5 s equals httpx's, and that race
once failed a test run."""

from __future__ import annotations

import asyncio

import httpx

HTTPX_KEEP_ALIVE_SECONDS = httpx.Limits().keepalive_expiry  # 5 s: the tests' and many clients' pools


async def get_healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return head.split(b"\r\n")[0]


async def test_a_connection_idle_past_a_clients_pool_expiry_still_answers(live_server):
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    try:
        assert await get_healthz(reader, writer) == b"HTTP/1.1 200 OK"
        # A raw connection has no pool of its own to drop it, so this asks the server alone.
        await asyncio.sleep(HTTPX_KEEP_ALIVE_SECONDS + 1)
        assert await get_healthz(reader, writer) == b"HTTP/1.1 200 OK"
    finally:
        writer.close()
        await writer.wait_closed()
