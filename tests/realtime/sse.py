"""A small Server-Sent Events client for the tests: a background task reads the stream into a
queue, so every wait has a deadline and waiting out a silence does not break the stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

_END = object()


@dataclass
class Event:
    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    received: float = 0.0  # time.monotonic() when it arrived

    def json(self):
        return json.loads(self.data)


def _parse(lines: list[str]) -> Event:
    event = Event(received=time.monotonic())
    data: list[str] = []
    for line in lines:
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            event.comments.append(value)
        elif name == "data":
            data.append(value)
        elif name in ("event", "id"):
            setattr(event, name, value)
        elif name == "retry":
            event.retry = int(value)
    event.data = "\n".join(data) if data else None
    return event


class EventStream:
    def __init__(self, response: httpx.Response):
        self.response = response
        self._blocks: asyncio.Queue = asyncio.Queue()
        self._reader = asyncio.create_task(self._read()) if response.status_code == 200 else None

    async def _read(self) -> None:
        lines: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line:
                    lines.append(line)
                elif lines:
                    self._blocks.put_nowait(_parse(lines))
                    lines = []
        except httpx.HTTPError:
            pass
        finally:
            self._blocks.put_nowait(_END)

    async def next(self, timeout: float) -> Event:
        """The next block (heartbeat comments included); TimeoutError if none comes in time."""
        block = await asyncio.wait_for(self._blocks.get(), timeout)
        if block is _END:
            self._blocks.put_nowait(_END)
            raise EOFError("the server ended the stream")
        return block

    async def next_event(self, timeout: float, name: str | None = None) -> Event:
        """The next real event (one carrying data, as a browser would dispatch), skipping comments."""
        deadline = time.monotonic() + timeout
        while True:
            block = await self.next(max(deadline - time.monotonic(), 0))
            if block.data is not None and (name is None or block.event == name):
                return block

    async def events_within(self, seconds: float) -> list[Event]:
        """Every real event that arrives in the next `seconds`."""
        found = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                block = await self.next(left)
            except asyncio.TimeoutError:
                break
            if block.data is not None:
                found.append(block)
        return found

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, httpx.HTTPError):
                pass


@asynccontextmanager
async def open_stream(base_url: str, embed_key: str, headers: dict[str, str] | None = None) -> AsyncIterator[EventStream]:
    """GET .../events on a server; the stream is closed (the connection dropped) on exit."""
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(5, read=None)) as http:
        async with http.stream("GET", f"/v1/public/venues/{embed_key}/events", headers=headers or {}) as response:
            if response.status_code != 200:
                await response.aread()
            stream = EventStream(response)
            try:
                yield stream
            finally:
                await stream.close()
