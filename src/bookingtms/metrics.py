"""Prometheus metrics: every metric the service exports is defined here, and /metrics serves them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_SECONDS = Histogram(
    "bookingtms_http_request_duration_seconds", "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0),
)
CACHE_HITS = Counter("bookingtms_cache_hits_total", "Cache reads answered from Redis", ["cache"])
CACHE_MISSES = Counter("bookingtms_cache_misses_total", "Cache reads that went to the database", ["cache"])
RATE_LIMITED = Counter("bookingtms_rate_limited_total", "Requests refused by a rate limit", ["tier"])
HOLDS = Counter("bookingtms_holds_total", "Reservation attempts by outcome", ["outcome"])
BOOKINGS = Counter("bookingtms_bookings_total", "Bookings created, by status at creation", ["status"])
DB_POOL_IN_USE = Gauge("bookingtms_db_pool_connections_in_use", "Database connections checked out",
                       ["pool"], multiprocess_mode="livesum")
DB_POOL_WAITS = Counter("bookingtms_db_pool_waits_total", "Checkouts that had to wait for a free connection", ["pool"])
JOB_LAG_SECONDS = Gauge("bookingtms_job_lag_seconds", "Age of the oldest due work item by job",
                        ["job"], multiprocess_mode="max")
SSE_STREAMS = Gauge("bookingtms_sse_streams", "Open Server-Sent Event streams", multiprocess_mode="livesum")


def install(app) -> None:
    """Adds the latency middleware and GET /metrics. (Being built: issue 5.)"""
