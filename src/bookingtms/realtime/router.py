"""GET /v1/public/venues/{embed_key}/events: a venue's availability changes as Server-Sent Events.

A stream sends, after a `retry` hint:
* `event: availability`, `id: <n>`, `data: {session_id, activity_id, start_time, capacity_total,
  capacity_remaining, is_closed}` for each committed change of one of the venue's sessions (a
  deleted session arrives as closed);
* `event: resync`, `data: {"reason": ...}` when the client should refetch availability because
  events may have been missed: it reconnected (`Last-Event-ID`), the server's LISTEN connection was
  re-established, or the client fell too far behind;
* a `: heartbeat` comment every BOOKINGTMS_SSE_HEARTBEAT_SECONDS, so proxies keep it open.

Event ids are opaque and only meaningful to the process that sent them; we keep no history, so a
reconnecting client always gets `resync` rather than a replay. Each process serves at most
BOOKINGTMS_SSE_MAX_STREAMS streams; beyond that it answers 503 `too_many_streams` with Retry-After.
"""

from __future__ import annotations

import asyncio
import random

import anyio
import structlog
from fastapi import APIRouter, Depends, Header
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError

from bookingtms.config import get_settings
from bookingtms.errors import ServiceUnavailable
from bookingtms.http.public import PublicVenue, public_venue
from bookingtms.realtime.hub import CLOSE, Hub, Subscriber, TooManyStreams, resync_event

public_router = APIRouter(prefix="/v1/public/venues", tags=["public"])
log = structlog.get_logger("bookingtms.realtime")

RETRY_AFTER_SECONDS = 5  # told to clients refused for lack of a free stream
SEND_TIMEOUT_SECONDS = 30  # a client that takes no bytes for this long is dropped and frees its slot

_hub: Hub | None = None


async def start() -> None:
    """Starts this process's LISTEN connection (called from the app's lifespan)."""
    global _hub
    _hub = Hub(get_settings())
    await _hub.start()


async def stop() -> None:
    """Ends open streams and closes the LISTEN connection."""
    global _hub
    if _hub is not None:
        await _hub.stop()
        _hub = None


class _Stream(EventSourceResponse):
    """Holds a stream slot for exactly as long as the response runs, however it ends."""

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, subscriber: Subscriber, resync: bool) -> None:
        settings = get_settings()
        shutdown = anyio.Event()

        async def end_on_shutdown() -> None:
            # On SIGTERM the library sets `shutdown`; ending the stream ourselves completes the
            # response properly instead of having it cancelled mid-way.
            await shutdown.wait()
            subscriber.put(CLOSE)

        super().__init__(self._events(subscriber, resync), ping=settings.sse_heartbeat_seconds,
                         ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
                         send_timeout=SEND_TIMEOUT_SECONDS, data_sender_callable=end_on_shutdown,
                         shutdown_event=shutdown, shutdown_grace_period=1.0)
        self._hub, self._subscriber = hub, subscriber

    @staticmethod
    async def _events(subscriber: Subscriber, resync: bool):
        # A spread-out reconnection delay, so a restart does not bring every client back at once.
        yield ServerSentEvent(comment="connected", retry=random.randint(1000, 5000))
        if resync:
            yield resync_event("last_event_id")
        while (event := await subscriber.queue.get()) is not CLOSE:
            yield event

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info("sse_client_too_slow")
        finally:
            self._hub.unsubscribe(self._subscriber)


STAFF_STREAM_SECONDS = 15 * 60  # then the browser reconnects, and its session is checked again


def staff_stream(organization_id, last_event_id: str | None) -> EventSourceResponse:
    """The whole organization's changes for the staff dashboard (GET /admin/events, web/admin_bookings):
    every venue's `availability` events with their `venue_id`, and `booking` events (hub.py). The
    caller checks the signed-in user first; the stream counts against the same per-process limit."""
    if _hub is None:
        raise ServiceUnavailable("Live updates are not available right now.", code="unavailable",
                                 headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    try:
        subscriber = _hub.subscribe(organization_id, None)
    except TooManyStreams:
        raise ServiceUnavailable("This server has no free live-update stream; retry shortly.",
                                 code="too_many_streams", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    asyncio.get_running_loop().call_later(STAFF_STREAM_SECONDS, subscriber.put, CLOSE)
    return _Stream(_hub, subscriber, resync=last_event_id is not None)


@public_router.get("/{embed_key}/events", response_class=_Stream, status_code=200, responses={
    200: {"description": "A stream of `availability`, `resync` events and heartbeat comments.",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def venue_events(v: PublicVenue = Depends(public_venue),
                       last_event_id: str | None = Header(None, max_length=200)):
    """The venue's availability changes as Server-Sent Events (see the module docstring)."""
    if _hub is None:
        raise ServiceUnavailable("Live updates are not available right now.", code="unavailable",
                                 headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    try:
        subscriber = _hub.subscribe(v.organization_id, v.venue_id)
    except TooManyStreams:
        raise ServiceUnavailable("This server has no free live-update stream; retry shortly.",
                                 code="too_many_streams", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    return _Stream(_hub, subscriber, resync=last_event_id is not None)
