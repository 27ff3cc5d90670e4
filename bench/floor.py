"""The floor under the mixed benchmark: what the cheapest requests cost on this machine.

Starts `bookingtms serve --workers 2 --demo` on its own data dir (embedded PostgreSQL and Redis,
rate limits on, each request from its own X-Forwarded-For address as in `bench run`), then drives
one endpoint at a time open loop (a fixed arrival rate; latency from each request's scheduled send)
and reads the CPU time of each process group from /proc over the measured window:

    .venv/bin/python bench/floor.py --endpoints healthz,venue,availability --rates 500,1000

healthz does no work at all; venue and availability are answered from the Redis cache after the
warm-up. A mix of requests that do more (bookings, staff reads, cache misses) costs more than
these, so twice the cores these use at a rate is more than the machine has for that rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds_by_group() -> dict[str, float]:
    """CPU seconds so far of the server's workers, PostgreSQL, Redis, and this load generator."""
    groups = {"workers": 0.0, "postgres": 0.0, "redis": 0.0}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        if "bookingtms.cli serve" in command or "multiprocessing" in command:
            groups["workers"] += seconds
        elif command.startswith("postgres") or "/bin/postgres " in command:  # backends, postmaster
            groups["postgres"] += seconds
        elif "redis" in command:
            groups["redis"] += seconds
    own = os.times()
    groups["load generator"] = own.user + own.system
    return groups


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def drive(http: aiohttp.ClientSession, url: str, rate: float, seconds: float) -> tuple[list[float], int, float]:
    """Requests at `rate` per second for `seconds`: (latencies of the good answers, errors, elapsed)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    start = loop.time() + 0.05

    async def one(index: int) -> None:
        nonlocal errors
        scheduled = start + index / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        address = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
        try:
            async with http.get(url, headers={"X-Forwarded-For": address}) as answer:
                await answer.read()
                good = answer.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            good = False
        if good:
            latencies.append(loop.time() - scheduled)
        else:
            errors += 1

    tasks = []
    for index in range(int(rate * seconds)):
        tasks.append(asyncio.ensure_future(one(index)))
        if index % 200 == 0:
            await asyncio.sleep(0)  # let the first requests go out while the rest are scheduled
    await asyncio.gather(*tasks)
    return latencies, errors, loop.time() - start


async def wait_ready(http: aiohttp.ClientSession, base: str, server: subprocess.Popen) -> None:
    for _ in range(600):
        if server.poll() is not None:
            sys.exit(f"the server exited with status {server.returncode}")
        try:
            async with http.get(f"{base}/readyz") as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    sys.exit("the server was not ready after 5 minutes")


async def measure(args, base: str, log: Path, server: subprocess.Popen) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=4)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await wait_ready(http, base, server)
        embed_key = re.search(r"embed key:\s+(\S+)", log.read_text()).group(1)
        async with http.get(f"{base}/v1/public/venues/{embed_key}") as answer:
            activity_id = (await answer.json())["activities"][0]["id"]
        urls = {"healthz": f"{base}/healthz", "venue": f"{base}/v1/public/venues/{embed_key}",
                "availability": f"{base}/v1/public/venues/{embed_key}/availability?activity_id={activity_id}"}
        print("| endpoint | offered/s | answered/s | errors | P50 | P95 | P99 | cores: workers | PostgreSQL "
              "| Redis | load generator | all | CPU ms per request, all |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name in args.endpoints.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                await drive(http, urls[name], rate, args.warmup)
                before = cpu_seconds_by_group()
                latencies, errors, elapsed = await drive(http, urls[name], rate, args.duration)
                after = cpu_seconds_by_group()
                cores = {group: (after[group] - before[group]) / elapsed for group in before}
                total = sum(cores.values())
                answered = len(latencies) / elapsed
                p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99)) if latencies else (0, 0, 0)
                print(f"| {name} | {rate:.0f} | {answered:.0f} | {errors} | {p50:.1f} | {p95:.1f} | {p99:.1f} | "
                      + " | ".join(f"{cores[g]:.2f}" for g in ("workers", "postgres", "redis", "load generator"))
                      + f" | {total:.2f} | {1000 * total / rate:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", default="healthz,venue,availability")
    parser.add_argument("--rates", default="500,1000", help="requests per second, comma-separated")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per rate (20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first (5)")
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bookingtms-floor-"))
    log = data_dir / "server.log"
    env = {**os.environ, "BOOKINGTMS_DATA_DIR": str(data_dir), "BOOKINGTMS_RUN_JOBS": "0",
           "BOOKINGTMS_TRUSTED_PROXIES": "127.0.0.1/32,::1/128"}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "bookingtms.cli", "serve", "--port", str(args.port),
                                   "--workers", "2", "--demo"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            asyncio.run(measure(args, f"http://127.0.0.1:{args.port}", log, server))
        finally:
            server.terminate()
            server.wait(30)
    shutil.rmtree(data_dir)  # kept (with the server's log) only when the run fails


if __name__ == "__main__":
    main()
