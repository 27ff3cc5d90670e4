"""The load generator's HTTP side: one aiohttp session over keep-alive connections, and timed
requests that record their latency from the time they were scheduled to be sent."""

from __future__ import annotations

import asyncio
import ipaddress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from bookingtms.bench.report import Recorder, clock

JSON = {"content-type": "application/json"}
# The address the server is told each request comes from (X-Forwarded-For; the server it starts
# trusts 127.0.0.1 as its proxy), set by each simulated user's task: the rate limits count per
# client address, as they would for real visitors behind a load balancer.
CLIENT_ADDRESS: ContextVar[str | None] = ContextVar("client_address", default=None)
FIRST_ADDRESS = int(ipaddress.IPv4Address("10.0.0.1"))
FIRST_STAFF_ADDRESS = int(ipaddress.IPv4Address("172.16.0.1"))


def client_address(index: int, first: int = FIRST_ADDRESS) -> str:
    """The index-th simulated visitor's address (in 10.0.0.0/8), or with FIRST_STAFF_ADDRESS the
    index-th staff member's (in 172.16.0.0/12, apart from the visitors)."""
    return str(ipaddress.IPv4Address(first + index))


@dataclass
class Answer:
    status: int | None  # None: no answer (timeout, connection error)
    code: str | None    # problem+json `code`, or why there was no answer
    body: Any           # the parsed JSON of a 2xx answer, when asked for (None if it was not JSON)
    done_at: float      # clock() time of the answer

    @property
    def outcome(self) -> str:
        if self.status is None:
            return self.code or "no answer"
        return f"{self.status} {self.code}" if self.code else str(self.status)


class Client:
    def __init__(self, base_url: str, connections: int, timeout: float, recorder: Recorder):
        self.base_url = base_url.rstrip("/")
        self.recorder = recorder
        # Idle connections are dropped long before the server's keep-alive ends (BOOKINGTMS_KEEP_ALIVE_SECONDS),
        # so a request never goes out on a connection the server is closing.
        connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=4, force_close=False)
        self.http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                                          skip_auto_headers=("User-Agent",))
        # Its own connections, so reading /metrics never queues behind the load.
        self.monitor = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2, keepalive_timeout=4),
                                             timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        await self.http.close()
        await self.monitor.close()

    async def call(self, method: str, path: str, route: str, *, intended: float | None = None,
                   json: Any = None, params: dict | None = None, headers: dict | None = None,
                   ok: tuple[int, ...] = (200,), refusals: tuple[str, ...] = (), want_body: bool = False,
                   record: bool = True, timeout: float | None = None) -> Answer:
        """One request. `ok` statuses and `refusals` (outcomes like "409 sold_out" that are the right
        answer under contention) are not errors; everything else is. Latency runs from `intended`,
        the time the request was scheduled (or from the actual send, if that was earlier), so waiting
        for a free connection or a client or server falling behind all show."""
        started = clock()
        intended = started if intended is None else intended
        begin = min(intended, started)
        if record:
            self.recorder.started(route, intended)
        status = code = body = None
        if json is not None:
            headers = {**JSON, **(headers or {})}
        if (address := CLIENT_ADDRESS.get()) is not None:
            headers = {**(headers or {}), "X-Forwarded-For": address}
        try:
            async with self.http.request(method, self.base_url + path, params=params, headers=headers,
                                         data=None if json is None else orjson.dumps(json),
                                         **({"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {})
                                         ) as response:
                raw = await response.read()
                status = response.status
        except asyncio.TimeoutError:
            code = "timeout"
        except aiohttp.ClientError as exc:
            code = type(exc).__name__
        done = clock()
        if status is not None:
            if 200 <= status < 300:
                if want_body and raw:
                    try:
                        body = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        code = "invalid_json"
            else:
                try:
                    code = orjson.loads(raw).get("code")
                except (orjson.JSONDecodeError, AttributeError):
                    code = None
        answer = Answer(status, code, body, done)
        if record:
            error = not ((status in ok and code is None) or answer.outcome in refusals)
            self.recorder.finished(route, intended, done - begin, answer.outcome, error)
        return answer

    async def settle(self, quick: float = 0.2, within: float = 120.0) -> bool:
        """Waits until the server answers /readyz (a database round trip through its pool) quickly
        three times in a row: it may still be working through a previous scenario's backlog.
        False if it never did within `within` s."""
        deadline, streak = clock() + within, 0
        while streak < 3:
            if clock() > deadline:
                return False
            began = clock()
            answered = await self.text("/readyz") is not None
            streak = streak + 1 if answered and clock() - began < quick else 0
            await asyncio.sleep(0.5)
        return True

    async def text(self, path: str) -> str | None:
        """A plain-text page (GET /metrics), or None when it does not answer 200."""
        try:
            async with self.monitor.get(self.base_url + path) as response:
                return await response.text() if response.status == 200 else None
        except (asyncio.TimeoutError, aiohttp.ClientError):
            return None
