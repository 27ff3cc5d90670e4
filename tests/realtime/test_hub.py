"""The per-process hub behind the event streams, driven by real commits: a client that stops
reading is held to a bounded backlog and told to resync while the others get every change, and a
process that starts while the database is unreachable starts anyway and catches up by itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bookingtms.realtime.hub import QUEUE_SIZE, Hub
from tests.factories import make_activity


async def test_a_stalled_client_gets_a_bounded_backlog_and_resync_while_others_get_every_change(
        client, tenant, settings, owner_engine):
    await make_activity(client, tenant)  # three sessions a day for the horizon
    venue = (uuid.UUID(tenant.organization_id), uuid.UUID(tenant.venue_id))
    hub = Hub(settings)
    await hub.start()
    try:
        assert hub.listening.is_set()
        reader, stalled = hub.subscribe(*venue), hub.subscribe(*venue)
        with owner_engine.begin() as conn:
            sessions = conn.execute(text("SELECT count(*) FROM activity_sessions WHERE venue_id = :v"),
                                    {"v": tenant.venue_id}).scalar()
        changes = 2 * sessions
        assert sessions < QUEUE_SIZE < changes

        async def read_all():
            received = []
            while len(received) < changes:
                received.append(await reader.queue.get())
            return received

        def change_every_session():  # one commit, one change per session of the venue
            with owner_engine.begin() as conn:
                conn.execute(text("UPDATE activity_sessions SET capacity_remaining = capacity_remaining - 1 "
                                  "WHERE venue_id = :v"), {"v": tenant.venue_id})

        reading = asyncio.create_task(read_all())
        for _ in range(2):
            await asyncio.to_thread(change_every_session)
        received = await asyncio.wait_for(reading, 5)
        assert all(b"event: availability" in event for event in received)
        assert len({event.split(b"\r\n")[0] for event in received}) == changes  # distinct ids

        assert stalled.queue.qsize() <= QUEUE_SIZE
        first = stalled.queue.get_nowait()
        assert b"event: resync" in first and b'"reason":"overflow"' in first
        hub.unsubscribe(reader)
        hub.unsubscribe(stalled)
        hub.unsubscribe(stalled)  # a stream's slot is given back once, however often it ends
        assert hub.open_streams == 0
    finally:
        await hub.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _database_proxy(port: int, database_url: str) -> asyncio.Server:
    """A TCP port that forwards to the test database: the database 'comes up' when this starts."""
    url = make_url(database_url)
    host = url.query.get("host") or url.host or "localhost"

    async def open_upstream():
        if host.startswith("/"):
            return await asyncio.open_unix_connection(os.path.join(host, f".s.PGSQL.{url.port or 5432}"))
        return await asyncio.open_connection(host, url.port or 5432)

    async def pipe(reader, writer):
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_reader, client_writer):
        upstream_reader, upstream_writer = await open_upstream()
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def test_starts_while_the_database_is_unreachable_and_catches_up_when_it_is_back(
        client, tenant, settings, owner_engine):
    activity = await make_activity(client, tenant)
    port = _free_port()
    database = make_url(settings.database_url).database
    unreachable = settings.model_copy(update={"database_direct_url": f"postgresql://owner@127.0.0.1:{port}/{database}"})
    hub = Hub(unreachable)
    started = time.monotonic()
    await hub.start(wait_seconds=0.5)
    proxy = None
    try:
        assert time.monotonic() - started < 2 and not hub.listening.is_set()
        stream = hub.subscribe(uuid.UUID(tenant.organization_id), uuid.UUID(tenant.venue_id))

        proxy = await _database_proxy(port, settings.database_direct_url or settings.database_url)
        await asyncio.wait_for(hub.listening.wait(), 10)
        told = await asyncio.wait_for(stream.queue.get(), 2)
        assert b"event: resync" in told and b'"reason":"reconnected"' in told

        with owner_engine.begin() as conn:
            conn.execute(text("UPDATE activity_sessions SET is_closed = true WHERE id = ("
                              "SELECT id FROM activity_sessions WHERE activity_id = :a ORDER BY start_time LIMIT 1)"),
                         {"a": activity["id"]})
        event = await asyncio.wait_for(stream.queue.get(), 2)
        assert b"event: availability" in event and b'"is_closed":true' in event
    finally:
        await hub.stop()
        if proxy is not None:
            proxy.close()
