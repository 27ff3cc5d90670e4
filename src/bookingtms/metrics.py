"""Prometheus metrics: every metric the service exports is defined here, and GET /metrics serves them.

One process keeps its samples in prometheus_client's default registry. Several workers
(`bookingtms serve --workers N`) use its multiprocess mode: `cmd_serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, every worker writes its
samples there (memory-mapped files), and a scrape answered by any worker adds them all up.

/metrics shows no tenant data but does show traffic, so it is served to loopback callers only (the
client address as the rest of the app resolves it: X-Forwarded-For counts only from
BOOKINGTMS_TRUSTED_PROXIES, so a public request relayed by a trusted proxy is refused): run the
scraper on the host, or let a local agent forward the samples. It is not rate limited and not in
the OpenAPI document."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import time
from pathlib import Path

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest, multiprocess
from sqlalchemy.pool import AsyncAdaptedQueuePool
from starlette.requests import Request
from starlette.responses import Response

from bookingtms.errors import AppError, Forbidden

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_SECONDS = Histogram(
    "bookingtms_http_request_duration_seconds", "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0),
)
CACHE_HITS = Counter("bookingtms_cache_hits_total", "Cache reads answered from Redis", ["cache"])
CACHE_MISSES = Counter("bookingtms_cache_misses_total", "Cache reads that went to the database", ["cache"])
RATE_LIMITED = Counter("bookingtms_rate_limited_total", "Requests refused by a rate limit", ["tier"])
RATE_LIMITS_SKIPPED = Counter("bookingtms_rate_limits_skipped_total",
                              "Requests served without a rate limit because Redis could not count them (fail open)")
HOLDS = Counter("bookingtms_holds_total", "Reservation attempts by outcome", ["outcome"])
BOOKINGS = Counter("bookingtms_bookings_total", "Bookings created, by status at creation", ["status"])
DB_POOL_IN_USE = Gauge("bookingtms_db_pool_connections_in_use", "Database connections checked out",
                       ["pool"], multiprocess_mode="livesum")
DB_POOL_WAITS = Counter("bookingtms_db_pool_waits_total", "Checkouts that had to wait for a free connection", ["pool"])
# Measured by the scrape itself (so a stuck job loop shows as growing lag), hence the latest value wins.
JOB_LAG_SECONDS = Gauge("bookingtms_job_lag_seconds", "Age of the oldest due work item by job",
                        ["job"], multiprocess_mode="mostrecent")
SSE_STREAMS = Gauge("bookingtms_sse_streams", "Open Server-Sent Event streams", multiprocess_mode="livesum")

UNMATCHED = "unmatched"  # the route label of every path no route serves, so junk paths add no series
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")

log = structlog.get_logger("bookingtms.metrics")


def install(app) -> None:
    """Adds the latency middleware (outside the others, so rate-limit refusals are timed too) and
    GET /metrics."""
    app.add_middleware(MetricsMiddleware, routes=app.routes)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)


# --------------------------------------------------------------------------------------------
# Request latency
# --------------------------------------------------------------------------------------------
class MetricsMiddleware:
    """Times every HTTP request and files it under its route template (`/v1/sessions/{session_id}`,
    never the raw path, so the number of series stays bounded), method and status class."""

    def __init__(self, app, routes) -> None:
        self.app = app
        self._routes = routes  # the app's route list (still being filled when this is created)
        self._templates: list[tuple[re.Pattern, str]] | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises
        stream = False

        async def send_and_watch(message) -> None:
            nonlocal status, stream
            if message["type"] == "http.response.start":
                status = message["status"]
                stream = any(k == b"content-type" and v.startswith(b"text/event-stream")
                             for k, v in message.get("headers", ()))
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            # An event stream's lifetime is not a latency (the open-streams gauge counts streams).
            if not stream:
                method = scope["method"] if scope["method"] in _METHODS else "other"
                REQUEST_SECONDS.labels(method, self._route(scope), f"{status // 100}xx").observe(
                    time.perf_counter() - started)

    def _route(self, scope) -> str:
        path = getattr(scope.get("route"), "path", None)
        if path:
            return path
        # Not routed: refused before routing (429) or no such route (404/405).
        if self._templates is None:
            self._templates = [(route.path_regex, route.path) for route in _flatten(self._routes)]
        for regex, template in self._templates:
            if regex.match(scope["path"]):
                return template
        return UNMATCHED


def _flatten(routes):
    """Every route with a path template, looking inside included routers."""
    for route in routes:
        if getattr(route, "original_router", None) is not None:
            yield from _flatten(route.original_router.routes)
        elif getattr(route, "path_regex", None) is not None and getattr(route, "path", None):
            yield route


# --------------------------------------------------------------------------------------------
# Database pool
# --------------------------------------------------------------------------------------------
class MeasuredPool(AsyncAdaptedQueuePool):
    """The engines' connection pool, counted: connections checked out, and checkouts that found
    every connection busy and so wait (up to pool_timeout) for one to come back. The label is the
    pool's logging name (`create_async_engine(poolclass=MeasuredPool, pool_logging_name="read")`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The series exists from the start: a pool that never waited shows 0, not nothing.
        DB_POOL_WAITS.labels(self._label)

    @property
    def _label(self) -> str:
        return self.logging_name or "primary"

    def _do_get(self):
        # QueuePool waits exactly when no idle connection is left and it may open no more.
        if self.checkedin() == 0 and -1 < self._max_overflow <= self.overflow():
            DB_POOL_WAITS.labels(self._label).inc()
        record = super()._do_get()
        DB_POOL_IN_USE.labels(self._label).set(self.checkedout())
        return record

    def _do_return_conn(self, record) -> None:
        super()._do_return_conn(record)
        DB_POOL_IN_USE.labels(self._label).set(self.checkedout())


# --------------------------------------------------------------------------------------------
# Holds
# --------------------------------------------------------------------------------------------
def count_holds(hold):
    """Decorates the hold service: counts every attempt by outcome, `success`, or the refusal's
    code (`sold_out`, `organization_suspended`, ...), or `error`."""

    @functools.wraps(hold)
    async def counted(*args, **kwargs):
        try:
            result = await hold(*args, **kwargs)
        except AppError as exc:
            HOLDS.labels(exc.code).inc()
            raise
        except Exception:
            HOLDS.labels("error").inc()
            raise
        HOLDS.labels("success").inc()
        return result

    return counted


# --------------------------------------------------------------------------------------------
# GET /metrics
# --------------------------------------------------------------------------------------------
def _is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


async def metrics_endpoint(request: Request) -> Response:
    client = getattr(request.state, "client_ip", None) or (request.client.host if request.client else None)
    if not _is_loopback(client):
        raise Forbidden("Metrics are served to the local host only.", code="metrics_forbidden")
    await _measure_job_lag()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        _forget_dead_workers(Path(directory))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry = REGISTRY
    # Which worker answered: lets an operator (and the tests) see that every worker serves.
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST,
                    headers={"X-Worker-Pid": str(os.getpid())})


async def _measure_job_lag() -> None:
    from bookingtms.worker import job_lag

    try:
        lags = await job_lag()
    except Exception as exc:  # noqa: BLE001 - the database being away must not take /metrics down
        log.warning("job_lag_unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
        return
    for job, seconds in lags.items():
        JOB_LAG_SECONDS.labels(job).set(seconds)


def _forget_dead_workers(directory: Path) -> None:
    """Drops the live gauges (connections in use, open streams) of workers that are gone, crashed
    ones included, so they no longer add to the sums."""
    for path in directory.iterdir():
        match = _LIVE_FILE.match(path.name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
