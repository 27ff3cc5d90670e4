"""One LISTEN connection per process, fanned out to the open event streams of each venue.

Migration 0006 makes PostgreSQL NOTIFY `session_availability` with a small JSON object whenever a
session's availability changes; NOTIFY is delivered at commit, so only committed changes arrive.
The hub listens on one direct connection (LISTEN cannot pass a transaction-mode PgBouncer, hence
DATABASE_DIRECT_URL), encodes each change once as a Server-Sent Event, and puts it on the bounded
queue of every stream of that venue. A stream that falls behind loses what it has not sent and
gets `resync` instead, so one slow client never holds up the others nor grows memory. When the
connection drops, the hub reconnects with backoff and tells every stream to `resync` (changes made
while nobody listened are not replayed: we keep no history).

Staff dashboards subscribe to a whole organization (`venue_id=None`): they get every venue's
availability changes with its `venue_id`, plus the changes of a booking that move no capacity
(a check-in, a payment confirming it) announced on a second channel, `booking_activity`, which is
never sent to the public streams.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import orjson
import structlog
from sse_starlette import ServerSentEvent

from bookingtms import metrics
from bookingtms.config import Settings
from bookingtms.db.urls import app_url

CHANNEL = "session_availability"
BOOKING_CHANNEL = "booking_activity"  # staff streams only: {organization_id, venue_id, booking_id, change}
QUEUE_SIZE = 256  # events a stream may fall behind by before it is told to resync
# How often the idle LISTEN connection is checked, to notice a network that died silently; the
# answer may take long on a busy server (a false alarm would make every client refetch at once).
PING_SECONDS = 10.0
PING_TIMEOUT_SECONDS = 30.0
CLOSE = None  # queued to end a stream

log = structlog.get_logger("bookingtms.realtime")


def resync_event(reason: str) -> bytes:
    """Tells the client to refetch availability: what changed meanwhile was not (or no longer) sent."""
    return ServerSentEvent(orjson.dumps({"reason": reason}).decode(), event="resync").encode()


class TooManyStreams(Exception):
    pass


@dataclass(eq=False)
class Subscriber:
    venue: tuple[uuid.UUID, uuid.UUID | None]  # (organization_id, venue_id); venue None: the whole organization
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def put(self, item: bytes | None) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:  # too far behind: drop the backlog, keep only "start over"
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(CLOSE if item is CLOSE else resync_event("overflow"))


class Hub:
    def __init__(self, settings: Settings) -> None:
        self.max_streams = settings.sse_max_streams
        url = app_url(settings, url=settings.database_direct_url or settings.database_url)
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._venues: dict[tuple[uuid.UUID, uuid.UUID], set[Subscriber]] = {}
        self._count = 0
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.listening = asyncio.Event()  # set while LISTEN is active

    # ---- streams ------------------------------------------------------------------------------
    def subscribe(self, organization_id: uuid.UUID, venue_id: uuid.UUID | None) -> Subscriber:
        if self._count >= self.max_streams or self._closing.is_set():
            raise TooManyStreams
        subscriber = Subscriber((organization_id, venue_id))
        self._venues.setdefault(subscriber.venue, set()).add(subscriber)
        self._count += 1
        metrics.SSE_STREAMS.inc()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        streams = self._venues.get(subscriber.venue)
        if streams is None or subscriber not in streams:
            return  # already gone
        streams.discard(subscriber)
        if not streams:
            del self._venues[subscriber.venue]
        self._count -= 1
        metrics.SSE_STREAMS.dec()

    @property
    def open_streams(self) -> int:
        return self._count

    def _broadcast(self, item: bytes | None) -> None:
        for streams in self._venues.values():
            for subscriber in streams:
                subscriber.put(item)

    def _on_notify(self, _conn, _pid, channel, payload: str) -> None:
        if not self._venues:
            return
        try:
            change = orjson.loads(payload)
            venue = (uuid.UUID(change.pop("organization_id")), uuid.UUID(change.pop("venue_id")))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("realtime_bad_payload", payload=payload[:200])
            return
        streams = self._venues.get(venue) if channel == CHANNEL else None
        if streams:
            # Encoded once, shared by every stream of the venue.
            event = ServerSentEvent(orjson.dumps(change).decode(), event="availability",
                                    id=str(next(self._ids))).encode()
            for subscriber in streams:
                subscriber.put(event)
        staff = self._venues.get((venue[0], None))
        if staff:
            event = ServerSentEvent(orjson.dumps({**change, "venue_id": str(venue[1])}).decode(),
                                    event="availability" if channel == CHANNEL else "booking",
                                    id=str(next(self._ids))).encode()
            for subscriber in staff:
                subscriber.put(event)

    # ---- the LISTEN connection ------------------------------------------------------------------
    async def start(self, wait_seconds: float = 3.0) -> None:
        """Starts listening in the background; waits a moment for the first connection, but a
        database that is down only delays events, never the application's start."""
        self._task = asyncio.create_task(self._listen_forever(), name="realtime-listen")
        try:
            await asyncio.wait_for(self.listening.wait(), wait_seconds)
        except asyncio.TimeoutError:
            log.warning("realtime_not_listening_yet")

    async def stop(self) -> None:
        self._closing.set()
        self._broadcast(CLOSE)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _listen_forever(self) -> None:
        delay = 0.1
        while not self._closing.is_set():
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5, server_settings={
                    "application_name": f"bookingtms-listen {os.getpid()}"})
            except Exception as exc:  # noqa: BLE001 - refused, timed out, auth: all mean "try again later"
                log.warning("realtime_connect_failed", error=repr(exc), retry_in=delay)
            else:
                connected = time.monotonic()
                try:
                    await self._listen(conn)
                except Exception:  # noqa: BLE001 - whatever broke, listening must resume
                    log.exception("realtime_listen_failed")
                finally:
                    self.listening.clear()
                    conn.terminate()
                if self._closing.is_set():
                    return
                log.warning("realtime_connection_lost")
                if time.monotonic() - connected > 10 * delay:
                    delay = 0.1  # it worked for a while: reconnect at once
            try:  # back off, unless stopping
                await asyncio.wait_for(self._closing.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 5.0)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        """LISTENs on `conn` until it is lost (or stops answering) or the hub stops."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        await conn.add_listener(BOOKING_CHANNEL, self._on_notify)
        self.listening.set()
        # Whatever changed while nobody was listening is unknown: every open stream starts over.
        self._broadcast(resync_event("reconnected"))
        while not lost.is_set() and not self._closing.is_set():
            try:
                await asyncio.wait_for(lost.wait(), PING_SECONDS)
            except asyncio.TimeoutError:
                await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT_SECONDS)  # raises if the connection is dead
