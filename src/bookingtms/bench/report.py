"""What a benchmark run measured, judged against the PRD (3.2.2) and issue 5's targets, written as
markdown and JSON under bench/results/."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# PRD 3.2.2, milliseconds. Our booking is two calls (hold, then checkout): each is held to the
# POST /bookings row, and so is their sum per booking (the "booking" row).
PRD_ROWS = {
    "GET /availability": (20, 50, 100),
    "POST /bookings": (100, 200, 500),
    "GET /bookings/:id": (10, 30, 50),
    "GET /dashboard/stats": (50, 100, 200),
}
AVAILABILITY = "GET /v1/public/venues/{embed_key}/availability"
BOOKING = "POST reservation + checkout (one booking)"
PRD_FOR_ROUTE = {
    AVAILABILITY: "GET /availability",
    "POST /v1/public/venues/{embed_key}/reservations": "POST /bookings",
    "POST /v1/public/venues/{embed_key}/reservations/{reservation_id}/checkout": "POST /bookings",
    BOOKING: "POST /bookings",
    "GET /v1/bookings/{booking_id}": "GET /bookings/:id",
    "GET /v1/public/bookings/{reference}": "GET /bookings/:id",
    "GET /v1/dashboard/stats": "GET /dashboard/stats",
}
# Issue 5, item 3.
TARGET_RATE = 1000
AVAILABILITY_P95_MS = 20
CACHE_HIT_RATE = 0.80

# The benchmark's clock for schedules and latencies. Not the event loop's: uvloop's loop.time()
# counts whole milliseconds, which would bias every latency by up to 1 ms.
clock = time.perf_counter


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class RouteStats:
    latencies: list[float] = field(default_factory=list)  # seconds, answered or not
    outcomes: Counter = field(default_factory=Counter)    # "200", "409 sold_out", "timeout"
    errors: Counter = field(default_factory=Counter)      # the outcomes that count as errors
    sent: int = 0

    def summary(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        ms = (lambda p: round(percentile(ordered, p) * 1000, 2)) if ordered else (lambda p: None)
        errors = sum(self.errors.values())
        return {"count": len(ordered), "sent": self.sent, "sent_rps": round(self.sent / seconds, 1),
                "achieved_rps": round((len(ordered) - errors) / seconds, 1), "p50_ms": ms(50), "p95_ms": ms(95),
                "p99_ms": ms(99), "max_ms": ms(100), "errors": errors,
                "outcomes": dict(self.outcomes), "error_outcomes": dict(self.errors)}


class Recorder:
    """Latencies and outcomes per route template, for requests whose arrival (scheduled send time)
    falls inside the measured window. Every arrival is one request."""

    def __init__(self) -> None:
        self.window = (math.inf, math.inf)
        self.routes: dict[str, RouteStats] = {}
        self.lags: list[float] = []  # how late the client dispatched arrivals (its own event-loop lag)
        self.arrivals = 0            # in the window
        # Progress counters cover the whole run, warm-up included.
        self.sent = self.done = self.failed = 0
        self.recent: list[float] = []

    def measuring(self, t: float) -> bool:
        return self.window[0] <= t < self.window[1]

    def arrived(self, t: float, lag: float) -> None:
        """An arrival scheduled at `t`, dispatched `lag` seconds late by a busy client."""
        if self.measuring(t):
            self.arrivals += 1
            self.lags.append(lag)

    def started(self, route: str, arrival: float) -> None:
        self.sent += 1
        if self.measuring(arrival):
            self.routes.setdefault(route, RouteStats()).sent += 1

    def finished(self, route: str, arrival: float, latency: float, outcome: str, error: bool) -> None:
        self.done += 1
        self.failed += error
        self.recent.append(latency)
        if self.measuring(arrival):
            stats = self.routes.setdefault(route, RouteStats())
            stats.latencies.append(latency)
            stats.outcomes[outcome] += 1
            if error:
                stats.errors[outcome] += 1

    def derived(self, route: str, arrival: float, latency: float, outcome: str = "201") -> None:
        """A latency that is not one request (hold + checkout of one booking)."""
        if self.measuring(arrival):
            stats = self.routes.setdefault(route, RouteStats())
            stats.sent += 1
            stats.latencies.append(latency)
            stats.outcomes[outcome] += 1

    def take_recent_p95_ms(self) -> float | None:
        recent, self.recent = sorted(self.recent), []
        return round(percentile(recent, 95) * 1000, 1) if recent else None

    def endpoint_rows(self, seconds: float) -> list[dict[str, Any]]:
        rows = []
        for route in sorted(self.routes, key=lambda r: (r == BOOKING, r.split(" ", 1)[1], r)):
            row = {"endpoint": route, **self.routes[route].summary(seconds)}
            if (prd := PRD_FOR_ROUTE.get(route)):
                row["prd"] = {"row": prd, **dict(zip(("p50_ms", "p95_ms", "p99_ms"), PRD_ROWS[prd]))}
            rows.append(row)
        return rows


# ------------------------------------------------------------------------------------------------
# The server's /metrics (Prometheus text): counters are compared before and after the window.
# ------------------------------------------------------------------------------------------------
@dataclass
class Scrape:
    """One reading of /metrics: every sample's value, and the metric families the server declares
    (a labelled counter nothing has touched yet is declared with no samples: it reads as zero)."""
    values: dict[tuple[str, tuple], float]
    families: set[str]

    def declares(self, name: str) -> bool:
        return name in self.families or name.removesuffix("_total") in self.families


def parse_metrics(text: str | None) -> Scrape | None:
    if text is None:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    scrape = Scrape({}, set())
    try:
        for family in text_string_to_metric_families(text):
            scrape.families.add(family.name)
            for sample in family.samples:
                scrape.values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    except ValueError:  # not Prometheus text: as if there were no /metrics
        return None
    return scrape


def _by_label(values: dict, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (sample, labels), value in values.items():
        if sample == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


SKIPPED = "bookingtms_rate_limits_skipped_total"  # requests the server let through unlimited (Redis failing)


def server_metrics(before: Scrape | None, after: Scrape | None, pool_in_use: list[float]) -> dict[str, Any]:
    """Cache hit rate and pool waits over the window; "not available" when the server does not export them."""
    if before is None or after is None:
        return {"available": False, "note": "GET /metrics did not answer"}
    delta = {key: value - before.values.get(key, 0.0) for key, value in after.values.items()}
    hits = _by_label(delta, "bookingtms_cache_hits_total", "cache")
    misses = _by_label(delta, "bookingtms_cache_misses_total", "cache")
    waits = _by_label(delta, "bookingtms_db_pool_waits_total", "pool")
    caches = {}
    for name in sorted(set(hits) | set(misses)):
        total = hits.get(name, 0) + misses.get(name, 0)
        caches[name] = {"hits": int(hits.get(name, 0)), "misses": int(misses.get(name, 0)),
                        "hit_rate": round(hits.get(name, 0) / total, 4) if total else None}
    total_hits, total_reads = sum(hits.values()), sum(hits.values()) + sum(misses.values())
    return {
        "available": True,
        "cache": {"exported": after.declares("bookingtms_cache_hits_total"), "by_cache": caches,
                  "hits": int(total_hits), "misses": int(total_reads - total_hits),
                  "hit_rate": round(total_hits / total_reads, 4) if total_reads else None},
        "db_pool_waits": ({k: int(v) for k, v in waits.items()}
                          if after.declares("bookingtms_db_pool_waits_total") else None),
        "db_pool_in_use_max": max(pool_in_use) if pool_in_use else None,
        "rate_limited": {k: int(v) for k, v in _by_label(delta, "bookingtms_rate_limited_total", "tier").items() if v},
        "rate_limits_skipped": (int(sum(v for (name, _), v in delta.items() if name == SKIPPED))
                                if after.declares(SKIPPED) else None),
    }


def server_latency(before: Scrape | None, after: Scrape | None) -> dict[str, dict[str, Any]]:
    """Per "METHOD /route", how long the server itself took over the window (its latency
    histogram's deltas; P50/P95 interpolated within buckets as Prometheus' histogram_quantile
    does). Against what the client measured, the difference is time spent queueing."""
    if not before or not after:
        return {}
    histograms: dict[str, dict[float, float]] = {}
    for (name, labels), value in after.values.items():
        if name == "bookingtms_http_request_duration_seconds_bucket":
            label = dict(labels)
            buckets = histograms.setdefault(f"{label.get('method')} {label.get('route')}", {})
            le = float(label["le"])
            buckets[le] = buckets.get(le, 0.0) + value - before.values.get((name, labels), 0.0)
    out = {}
    for route, buckets in histograms.items():
        bounds = sorted(buckets)
        total = buckets[bounds[-1]]
        if total > 0:
            out[route] = {"count": int(total), "p50_ms": _bucket_quantile(bounds, buckets, 0.50 * total),
                          "p95_ms": _bucket_quantile(bounds, buckets, 0.95 * total),
                          "last_bucket_ms": round(bounds[-2] * 1000, 1) if len(bounds) > 1 else None}
    return out


def _server_ms(server: dict, key: str) -> str:
    """A server-side percentile; at the histogram's last bound it is only known to be at least that."""
    value = server[key]
    return f"≥{value:.0f}" if value is not None and value == server.get("last_bucket_ms") else _ms(value)


def _bucket_quantile(bounds: list[float], buckets: dict[float, float], rank: float) -> float:
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):  # beyond the last bucket: all we know is "more than the last bound"
                return round(lower * 1000, 1)
            share = (rank - below) / max(buckets[bound] - below, 1e-9)
            return round((lower + (bound - lower) * share) * 1000, 1)
        lower, below = bound, buckets[bound]
    return round(lower * 1000, 1)


def pool_in_use(scrape: Scrape | None) -> float | None:
    """Database connections checked out right now, summed over pools and processes."""
    if scrape is None or not scrape.declares("bookingtms_db_pool_connections_in_use"):
        return None
    return sum(v for (name, _), v in scrape.values.items() if name == "bookingtms_db_pool_connections_in_use")


# ------------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------------
def _ms_verdict(measured: float | None, limit: float, strict: bool = False) -> str:
    if measured is None:
        return "NOT MEASURED (no answers)"
    within = measured < limit if strict else measured <= limit
    if within:
        return "PASS"
    return f"MISSED by {measured - limit:.1f} ms ({measured:.1f} ms vs {limit} ms)"


def judge(mixed: dict[str, Any]) -> list[dict[str, str]]:
    """Issue 5's targets for the mixed load: each PASS, or MISSED by how much."""
    targets = []
    offered, achieved = mixed["offered_rps"], mixed["achieved_rps"]
    if offered < TARGET_RATE:
        rate = f"MISSED: offered {offered:g} rps, not {TARGET_RATE:,}"
    elif achieved < 0.98 * offered:
        rate = f"MISSED by {offered - achieved:.0f} rps (answered {achieved:.0f} of {offered:g} rps offered)"
    else:
        rate = "PASS"
    targets.append({"target": f"{TARGET_RATE:,} requests per second of the mixed load, answered", "result": rate})
    for row in mixed["endpoints"]:
        if "prd" in row:
            targets.append({"target": f"{row['endpoint']}: P95 within the PRD's {row['prd']['p95_ms']} ms "
                                      f"({row['prd']['row']})",
                            "result": _ms_verdict(row["p95_ms"], row["prd"]["p95_ms"])})
    availability = next((r for r in mixed["endpoints"] if r["endpoint"] == AVAILABILITY), None)
    targets.append({"target": f"availability P95 under {AVAILABILITY_P95_MS} ms",
                    "result": _ms_verdict(availability and availability["p95_ms"], AVAILABILITY_P95_MS, strict=True)})
    errors, arrivals = mixed["errors"], max(1, mixed["arrivals"])
    targets.append({"target": "no errors", "result": "PASS" if errors == 0 else
                    f"MISSED: {errors} errors ({100 * errors / arrivals:.2f}% of requests)"})
    cache = mixed["server"].get("cache") if mixed["server"].get("available") else None
    if not cache or not cache["exported"]:
        hit = "NOT AVAILABLE (the server exports no bookingtms_cache_* counters)"
    elif cache["hit_rate"] is None:
        hit = "NOT MEASURED (no cache reads during the window)"
    elif cache["hit_rate"] > CACHE_HIT_RATE:
        hit = f"PASS ({100 * cache['hit_rate']:.1f}%)"
    else:
        hit = f"MISSED by {100 * (CACHE_HIT_RATE - cache['hit_rate']):.1f} points ({100 * cache['hit_rate']:.1f}%)"
    targets.append({"target": f"cache hit rate above {CACHE_HIT_RATE:.0%}", "result": hit})
    return targets


# ------------------------------------------------------------------------------------------------
# The machine and the files
# ------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version()}


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def machine_busy(before, after) -> float | None:
    if not before or not after or after[1] == before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def _ms(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def _mixed_markdown(m: dict[str, Any]) -> list[str]:
    load = m["load"]
    out = ["## Mixed load", "",
           f"Open loop: {load['arrivals']} arrivals at {m['offered_rps']:g} requests/s, independent of the answers, "
           f"for {load['duration_s']:g} s after a {load['warmup_s']:g} s warm-up; {load['users']:,} simulated users, "
           f"each pausing {load['think_time_s']:.1f} s on average (exponential think time) between steps; "
           f"at most {load['connections']} keep-alive connections. Each arrival goes to a user not waiting for "
           f"an answer, and its latency is measured from its scheduled send time, so waiting for a connection "
           f"or a slow answer is never hidden; a request unanswered after {load['timeout_s']:g} s is a timeout "
           f"(an error).", "",
           f"In the window: {m['arrivals']:,} arrivals ({m['arrivals'] / load['duration_s']:.1f}/s), "
           f"{m['completed']:,} answered or timed out, {m['errors']:,} errors (timeouts and the "
           f"{m['unanswered']:,} still unanswered when the run ended included), {m['achieved_rps']:g} good "
           f"answers/s.",
           "", "### Mix", ""]
    out += _table(["journey", "share of journeys", "steps"],
                  [[j["name"], f"{100 * j['share']:.0f}%", j["steps"]] for j in load["journeys"]])
    out += ["", "Requests by endpoint (measured window): " + ", ".join(
        f"{r['endpoint']} {100 * r['sent'] / max(1, m['arrivals']):.1f}%"
        for r in m["endpoints"] if r["endpoint"] != BOOKING) + ".", ""]
    out += ["### Endpoints (ms)", ""]
    rows = []
    for r in m["endpoints"]:
        prd, server = r.get("prd"), r.get("server")
        rows.append([f"`{r['endpoint']}`", r["count"], r["achieved_rps"], _ms(r["p50_ms"]), _ms(r["p95_ms"]),
                     _ms(r["p99_ms"]), _ms(r["max_ms"]), r["errors"],
                     f"{_server_ms(server, 'p50_ms')}/{_server_ms(server, 'p95_ms')}" if server else "–",
                     f"{prd['p50_ms']}/{prd['p95_ms']}/{prd['p99_ms']}" if prd else "–",
                     (_ms_verdict(r["p95_ms"], prd["p95_ms"]) if prd else "–")])
    out += _table(["endpoint", "count", "good/s", "P50", "P95", "P99", "max", "errors", "server P50/P95",
                   "PRD P50/P95/P99", "P95 vs PRD"], rows)
    out += ["", "P50 to max: as the client saw them, from each request's scheduled send. Server P50/P95: the "
                "server's own timing of the same window (its /metrics histogram); the gap between the two is "
                "time spent waiting (for a connection, a worker, the CPU)."]
    outcome_rows = [[f"`{r['endpoint']}`", ", ".join(f"{k}: {v}" for k, v in sorted(r["outcomes"].items())),
                     ", ".join(f"{k}: {v}" for k, v in sorted(r["error_outcomes"].items())) or "–"]
                    for r in m["endpoints"] if r["endpoint"] != BOOKING]
    out += ["", "### Answers and errors by status / code", ""]
    out += _table(["endpoint", "answers", "counted as errors"], outcome_rows)
    s = m["server"]
    out += ["", "### Server and client", ""]
    if s.get("available"):
        cache = s["cache"]
        if cache["exported"]:
            rate = "–" if cache["hit_rate"] is None else f"{100 * cache['hit_rate']:.1f}%"
            per = "; ".join(f"{name} {c['hits']} of {c['hits'] + c['misses']}" for name, c in cache["by_cache"].items())
            out.append(f"* cache hit rate: {rate} ({cache['hits']:,} hits, {cache['misses']:,} misses"
                       + (f"; hits of reads by cache: {per}" if per else "") + ")")
        else:
            out.append("* cache hit rate: not available (no bookingtms_cache_* counters at /metrics)")
        waits = s["db_pool_waits"]
        out.append("* database pool waits: " + ("not available" if waits is None else
                                                 ", ".join(f"{k or 'all'} {v}" for k, v in waits.items()) or "0"))
        out.append("* database connections in use (max of samples every 5 s): "
                   + ("not available" if s["db_pool_in_use_max"] is None else f"{s['db_pool_in_use_max']:g}"))
        refused = s.get("rate_limited") or {}
        out.append("* refused by a rate limit: " + (", ".join(f"{k} {v:,}" for k, v in refused.items()) or "none"))
        skipped = s.get("rate_limits_skipped")
        out.append("* served without a rate limit (Redis could not count them): "
                   + ("not available" if skipped is None else f"{skipped:,}"))
    else:
        out.append(f"* server metrics: not available ({s.get('note')})")
    c = m["client"]
    out.append(f"* load generator: 1 process, {c['cpu_percent']}% of one core; it dispatched arrivals late by "
               f"{_ms(c['dispatch_lag_p99_ms'])} ms at P99, {_ms(c['dispatch_lag_max_ms'])} ms at most "
               "(more than a few ms means the client itself fell behind)")
    out.append(f"* whole machine CPU busy during the window: "
               f"{'–' if m['machine_busy_percent'] is None else str(m['machine_busy_percent']) + '%'} "
               "(everything running on it, not only this benchmark)")
    out += ["", "### Targets (issue 5, item 3)", ""]
    out += _table(["target", "result"], [[t["target"], t["result"]] for t in m["targets"]])
    return out


def _hot_markdown(h: dict[str, Any]) -> list[str]:
    out = ["## Hot slot", "",
           f"{h['buyers']} buyers arrive evenly within {h['arrival_window_s']:g} s for one session of capacity "
           f"{h['capacity']} (activity `{h['activity_id']}`, session `{h['session_id']}`, max 1 spot each); "
           "each holds 1 spot and checks out.", ""]
    out += _table(["check", "result"], [[c["check"], "PASS" if c["ok"] else f"FAILED ({c['detail']})"]
                                        for c in h["checks"]])
    other = ", ".join(f"{k}: {v}" for k, v in h["other"].items())
    out += ["", f"Booked {h['booked']}, told `sold_out` {h['sold_out']}, other answers {sum(h['other'].values())}"
                f"{f' ({other})' if other else ''}; first request to last answer {h['elapsed_s']:.3f} s.", ""]
    out += _table(["request", "count", "P50", "P95", "P99", "max"],
                  [[f"`{r['endpoint']}`", r["count"], _ms(r["p50_ms"]), _ms(r["p95_ms"]), _ms(r["p99_ms"]),
                    _ms(r["max_ms"])] for r in h["endpoints"]])
    return out


def _limits_note(on: bool | None) -> str:
    if on is None:
        return ""
    return " (rate limits on, counted per visitor address)" if on else " (rate limits off)"


def markdown(report: dict[str, Any]) -> str:
    mach, server, data = report["machine"], report["server"], report["data"]
    started = f"{server['workers']} worker processes started by the benchmark" + _limits_note(server.get("rate_limits"))
    counts = ", ".join(f"{k} {v:,}" for k, v in (data.get("counts") or {}).items())
    lines = [f"# Load benchmark: {report['scenario']} ({report['started_at']})", "",
             f"Command: `{report['command']}`", "",
             f"* machine: {mach['cpus']} cores ({mach['cpu_model'] or 'unknown CPU'}), {mach['platform']}, "
             f"Python {mach['python']}",
             f"* server: {server['url']}, "
             + (started if server["started_by_bench"] else "already running (not started by the benchmark)"),
             f"* data: profile `{data.get('profile')}`" + (f" ({counts})" if counts else "")
             + f", manifest `{data['manifest']}`",
             f"* random seed: {report['seed']}", ""]
    if "mixed" in report:
        lines += _mixed_markdown(report["mixed"]) + [""]
    if "hot_slot" in report:
        lines += _hot_markdown(report["hot_slot"]) + [""]
    return "\n".join(lines)


def write(report: dict[str, Any], out_dir: Path) -> Path:
    """`<UTC timestamp>-<scenario>.md|json` and copies as latest.md|json; returns the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = out_dir / f"{stamp}-{report['scenario']}"
    md, js = base.with_suffix(".md"), base.with_suffix(".json")
    md.write_text(markdown(report))
    js.write_text(json.dumps(report, indent=2, default=str) + "\n")
    shutil.copyfile(md, out_dir / "latest.md")
    shutil.copyfile(js, out_dir / "latest.json")
    return md
