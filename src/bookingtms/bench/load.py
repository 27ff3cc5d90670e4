"""`bookingtms bench run`: an open-loop HTTP load against a server on this machine, and its report.

Without --url it starts `bookingtms serve --workers N` itself on a free loopback port, waits for
/readyz, runs, and stops it. Its rate limits stay on, as in production: it trusts 127.0.0.1 as a
proxy, and each simulated visitor sends its own address in X-Forwarded-For (load_client.py).
The scenarios: `mixed` (load_mix.py) and `hot-slot` (hot_slot.py); `all` runs both. Reports go to
--out as `<UTC timestamp>-<scenario>.md|json` and latest.md|json (report.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bookingtms.bench import report
from bookingtms.bench.report import BOOKING, Recorder, clock

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TRUSTED_LOOPBACK = "127.0.0.1/32,::1/128"  # the load generator stands in for a load balancer
READY_SECONDS = 900  # a first start may run migrations over a large data set
THINK_SECONDS = 10.0  # a person's pause between two pages, when --users is not given


class BenchError(Exception):
    """A run that cannot start or go on: the message says why; exit status 2."""


def _number(kind, low: float, high: float, inclusive: bool = False):
    """An argparse type: a finite number above `low` (or at least, if `inclusive`) and at most `high`,
    so that a typo cannot ask for a run without end."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'at least' if inclusive else 'above'} {low}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {high:,}")
        return value
    return parse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="drive the HTTP API with an open-loop load and write a report",
        description="Open-loop load against a BookingTMS server on 127.0.0.1; writes markdown and JSON "
                    "reports. Data comes from the manifest written by `bookingtms bench seed`.")
    add = parser.add_argument
    add("--url", help="a server already running on 127.0.0.1 (default: start one)")
    add("--rate", type=_number(float, 0, 100_000), default=1000.0, help="requests per second (default 1000)")
    add("--duration", type=_number(float, 0, 3600), default=60.0, help="measured seconds (default 60)")
    add("--warmup", type=_number(float, 0, 600, inclusive=True), default=10.0,
        help="unmeasured seconds first (default 10)")
    add("--connections", type=_number(int, 0, 10_000), default=256, help="keep-alive connections at most (256)")
    add("--scenario", choices=("mixed", "hot-slot", "all"), default="all",
        help="the mixed load, the hot slot, or both (default all)")
    add("--workers", type=_number(int, 0, 64), default=os.cpu_count() or 1,
        help="server processes, when the benchmark starts the server (default: CPU count)")
    add("--out", type=Path, default=Path("bench/results"), help="report directory (default bench/results)")
    add("--manifest", type=Path, help="the seeder's manifest (default: $BOOKINGTMS_DATA_DIR/bench/manifest.json)")
    add("--users", type=_number(int, 0, 1_000_000),
        help="simulated users; their mean think time is users / rate (default: rate x 10 s of think time, "
             "so 10,000 users at 1,000 requests/s)")
    add("--staff", type=_number(int, 0, 1000), default=20,
        help="organizations whose owner logs in for the staff journeys (default 20; each owner has the "
             "authenticated rate limit of 1,000 requests a minute, enough up to about 100 x staff requests/s)")
    add("--capacity", type=_number(int, 0, 10_000), default=20, help="hot-slot session capacity (default 20)")
    add("--buyers", type=_number(int, 0, 100_000), default=500, help="hot-slot buyers within one second (500)")
    add("--timeout", type=_number(float, 0, 300), default=10.0,
        help="seconds before a request counts as unanswered (default 10)")
    add("--seed", type=int, help="random seed (default: random; the report records it)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from bookingtms.config import get_settings

    settings = get_settings()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    try:
        if args.url:
            check_url(args.url)
        manifest_path = (args.manifest or settings.data_dir / "bench" / "manifest.json").resolve()
        manifest = load_manifest(manifest_path)
        with server(args.url, args.workers, settings.data_dir) as (base_url, started):
            result = _run_async(bench(args, base_url, manifest, seed))
    except BenchError as exc:
        print(f"bench run: {exc}", file=sys.stderr)
        return 2
    result.update({
        "machine": report.machine(),
        "server": {"url": base_url, "started_by_bench": started, "workers": args.workers if started else None,
                   # The server started here inherits this environment, so it limits as these settings say.
                   "rate_limits": settings.rate_limits if started else None},
        "data": {"profile": manifest.get("profile"), "counts": manifest.get("counts"), "manifest": str(manifest_path),
                 "sampled_organizations": len(manifest["organizations"])},
    })
    try:
        path = report.write(result, args.out)
    except OSError as exc:
        print(f"bench run: cannot write the report to {args.out}: {exc}", file=sys.stderr)
        return 2
    print()
    print(report.markdown(result))
    print(f"report: {path} (and {args.out / 'latest.md'}, .json)")
    if "hot_slot" in result and not result["hot_slot"]["passed"]:
        print("bench run: the hot-slot checks FAILED", file=sys.stderr)
        return 1
    return 0


def _run_async(coro):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)


def load_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise BenchError(f"no manifest at {path}: run `bookingtms bench seed` first, or pass --manifest")
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("password"), str):
            raise ValueError("no password")
        for org in manifest["organizations"]:
            _require(org, "id", "owner_email")
            for venue in org.get("venues") or []:
                _require(venue, "id", "embed_key")
            for booking in org.get("bookings") or []:
                _require(booking, "id", "reference", "email")
        if not any(o.get("venues") for o in manifest["organizations"]):
            raise ValueError("it lists no organization with a venue")
    except KeyError as exc:
        raise BenchError(f"{path} is not a bench manifest (no {exc})") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise BenchError(f"{path} is not a bench manifest ({exc})") from None
    return manifest


def _require(entry: dict, *keys: str) -> None:
    if (missing := [k for k in keys if k not in entry]):
        raise ValueError(f"an entry has no {', '.join(missing)}")


# ------------------------------------------------------------------------------------------------
# The server under test
# ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        raise BenchError(f"--url must be http on 127.0.0.1 (this benchmark loads this machine only), not {url}")
    return url.rstrip("/")


@contextmanager
def server(url: str | None, workers: int, data_dir: Path) -> Iterator[tuple[str, bool]]:
    """The given loopback URL, or `bookingtms serve` started for the run and stopped after it."""
    import httpx

    if url:
        yield check_url(url), False
        return
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = (data_dir / "bench" / f"server-{port}.log").resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting bookingtms serve --workers {workers} on {base} (log: {log_path})", flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bookingtms.cli", "serve", "--port", str(port), "--workers", str(workers)],
            env={**os.environ, "BOOKINGTMS_TRUSTED_PROXIES": TRUSTED_LOOPBACK}, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline, said = time.monotonic() + READY_SECONDS, time.monotonic()
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"the server exited with status {proc.returncode}; see {log_path}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"the server was not ready after {READY_SECONDS} s; see {log_path}")
                if time.monotonic() - said > 15:
                    print("  still waiting for /readyz (migrations?) ...", flush=True)
                    said = time.monotonic()
                time.sleep(0.25)
            yield base, True
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
def _command() -> str:
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("BOOKINGTMS_DATA_DIR",) if k in os.environ)
    return (env + " " if env else "") + "bookingtms " + shlex.join(sys.argv[1:])


async def bench(args, base_url: str, manifest: dict[str, Any], seed: int) -> dict[str, Any]:
    from bookingtms.bench.hot_slot import SetupFailed, run_hot_slot
    from bookingtms.bench.load_client import Client

    result: dict[str, Any] = {"scenario": args.scenario, "command": _command(), "seed": seed,
                              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    rng = random.Random(seed)
    client = Client(base_url, args.connections, args.timeout, Recorder())
    try:
        if args.scenario in ("mixed", "all"):
            result["mixed"] = await mixed(args, client, manifest, rng)
        if args.scenario in ("hot-slot", "all"):
            if "mixed" in result and not await client.settle():
                print("the server is still slow to answer /readyz two minutes after the mixed load", flush=True)
            print(f"hot slot: {args.buyers} buyers within 1 s for {args.capacity} spots ...", flush=True)
            try:
                result["hot_slot"] = await run_hot_slot(client, manifest, args.capacity, args.buyers)
            except SetupFailed as exc:
                raise BenchError(f"hot slot could not be set up: {exc}") from None
    finally:
        await client.close()
    return result


async def mixed(args, client, manifest: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    from bookingtms.bench.load_mix import Catalog, Mix, drive

    users = args.users or max(1, round(args.rate * THINK_SECONDS))
    catalog = Catalog(manifest)
    print(f"logging in up to {args.staff} staff (owners of seeded organizations) ...", flush=True)
    login_failures = await catalog.log_in_staff(client, manifest["password"], args.staff)
    for failure in login_failures:
        print(f"  login failed: {failure}", flush=True)
    mix = Mix(client, catalog, rng)
    recorder: Recorder = client.recorder
    start = clock() + 0.2
    begin, end = recorder.window = (start + args.warmup, start + args.warmup + args.duration)
    edge: dict[str, Any] = {}
    in_use: list[float] = []

    async def window_opens() -> None:
        await asyncio.sleep(max(0.0, begin - clock()))
        edge.update(cpu=report.cpu_times(), client_cpu=time.process_time(), at=clock())
        edge["metrics"] = report.parse_metrics(await client.text("/metrics"))

    watchers = [asyncio.create_task(window_opens()), asyncio.create_task(progress(recorder, start)),
                asyncio.create_task(sample_pool(client, recorder.window, in_use))]
    try:
        await drive(mix, rng, args.rate, users, start, end, args.timeout + 2)
    finally:
        for task in watchers:
            task.cancel()
    # The window's answers are all in (or given up on): the counters' deltas cover them.
    client_cpu = round(100 * (time.process_time() - edge["client_cpu"]) / (clock() - edge["at"]), 1)
    busy = report.machine_busy(edge["cpu"], report.cpu_times())
    after = report.parse_metrics(await client.text("/metrics"))
    server_side = report.server_metrics(edge.get("metrics"), after, in_use)
    seconds = args.duration
    rows = recorder.endpoint_rows(seconds)
    server_latency = report.server_latency(edge.get("metrics"), after)
    for row in rows:
        if row["endpoint"] in server_latency:
            row["server"] = server_latency[row["endpoint"]]
    real = [r for r in rows if r["endpoint"] != BOOKING]
    answered = sum(r["count"] for r in real)
    failed = sum(r["errors"] for r in real)
    lags = sorted(recorder.lags)
    m = {
        "load": {"arrivals": "Poisson", "rate_rps": args.rate, "duration_s": args.duration, "warmup_s": args.warmup,
                 "users": users, "think_time_s": users / args.rate, "connections": args.connections,
                 "timeout_s": args.timeout, "journeys": mix.describe(), "staff_logged_in": len(catalog.staff),
                 "staff_login_failures": login_failures, "venues": len(catalog.venues)},
        "offered_rps": args.rate,
        "arrivals": recorder.arrivals,
        "sent": sum(r["sent"] for r in real),
        "completed": answered,
        # Arrivals of the window with no outcome at all (not even a timeout) when the run ended.
        "unanswered": recorder.arrivals - answered,
        "errors": failed + recorder.arrivals - answered,
        "achieved_rps": round((answered - failed) / seconds, 1),
        "endpoints": rows,
        "client": {"processes": 1, "cpu_percent": client_cpu,
                   "dispatch_lag_p99_ms": round(report.percentile(lags, 99) * 1000, 2) if lags else None,
                   "dispatch_lag_max_ms": round(lags[-1] * 1000, 2) if lags else None},
        "machine_busy_percent": busy,
        "server": server_side,
    }
    m["targets"] = report.judge(m)
    return m


async def sample_pool(client, window: tuple[float, float], in_use: list[float], every: float = 5.0) -> None:
    """The server's database pool gauge, every few seconds inside the window (/metrics is not free)."""
    await asyncio.sleep(max(0.0, window[0] - clock()))
    while clock() < window[1]:
        gauge = report.pool_in_use(report.parse_metrics(await client.text("/metrics")))
        if gauge is not None:
            in_use.append(gauge)
        await asyncio.sleep(every)


async def progress(recorder: Recorder, start: float) -> None:
    """A line a second: elapsed, sent, answered, errors, P95 of the last second's answers."""
    begin, end = recorder.window
    tick = start
    while True:
        tick = max(tick + 1.0, clock())
        await asyncio.sleep(tick - clock())
        now = clock()
        phase = "warm-up" if now < begin else "measuring" if now < end else "draining"
        p95 = recorder.take_recent_p95_ms()
        print(f"{now - start:6.0f}s  {phase:9}  sent {recorder.sent:>8,}  answered {recorder.done:>8,}  "
              f"errors {recorder.failed:>5,}  P95 last second {'-' if p95 is None else f'{p95:.1f} ms':>10}  "
              f"in flight {recorder.sent - recorder.done:>5,}", flush=True)
