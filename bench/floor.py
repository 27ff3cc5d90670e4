"""The floor under the mixed benchmark: what the cheapest requests cost on this machine.

Starts `bookingtms serve --workers 2 --demo` on a fresh data dir of its own (its own embedded
PostgreSQL and Redis, whatever DATABASE_URL or REDIS_URL say; rate limits on, each request from its
own X-Forwarded-For address as in `bench run`), then drives one endpoint at a time open loop (a
fixed arrival rate; latency from each request's scheduled send) and reads the CPU time of each
process tree from /proc over the measured window:

    .venv/bin/python bench/floor.py --endpoints healthz,venue,availability --rates 500,1000

healthz does no work at all; venue and availability are answered from the Redis cache after the
warm-up. Whatever a mix of requests costs a request, it is at least what these cost.
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
import uvloop

from bookingtms.bench.load import TRUSTED_LOOPBACK
from bookingtms.bench.load_client import client_address
from bookingtms.bench.report import clock, cpu_times, machine, machine_busy, percentile

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GROUPS = ("workers", "postgres", "redis", "load generator")


def processes() -> dict[int, tuple[int, float, float]]:
    """pid: (parent pid, CPU seconds, CPU seconds of its reaped children)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        found[int(proc.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
                                 (int(fields[13]) + int(fields[14])) / CLOCK_TICKS)
    return found


def tree(found: dict, root: int) -> set[int]:
    """`root` and its descendants among `found`."""
    children: dict[int, list[int]] = {}
    for pid, (parent, *_) in found.items():
        children.setdefault(parent, []).append(pid)
    members, todo = set(), [root]
    while todo:
        pid = todo.pop()
        members.add(pid)
        todo.extend(children.get(pid, ()))
    return members & found.keys()


def embedded_servers(server_pid: int, data_dir: Path) -> dict[str, int]:
    """The pids of the embedded PostgreSQL's postmaster and of the embedded Redis (both detach from
    the server that started them). Redis's pid file lies beside its socket, whose URL the server
    hands its workers in their environment."""
    postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    urls = [entry for pid in tree(processes(), server_pid) - {server_pid}
            for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if entry.startswith(b"REDIS_URL=unix://")]
    if not urls:
        sys.exit("no worker of the server names an embedded Redis in its environment")
    socket = Path(urls[0].split(b"unix://", 1)[1].decode())
    return {"workers": server_pid, "postgres": postmaster, "redis": int((socket.parent / "redis.pid").read_text())}


def cpu_seconds_by_group(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each root's process tree (the server and its workers, PostgreSQL,
    Redis) and of this process. The roots' reaped children count too, so a process that ends
    within the window keeps its share."""
    found = processes()
    groups = dict.fromkeys(GROUPS, 0.0)
    for group, root in roots.items():
        groups[group] = sum(found[pid][1] for pid in tree(found, root)) + found.get(root, (0, 0, 0))[2]
    own = os.times()
    groups["load generator"] = own.user + own.system
    return groups


async def drive(http: aiohttp.ClientSession, url: str, rate: float, seconds: float) -> tuple[list[float], int]:
    """Requests at `rate` per second for `seconds`: (the latencies of all, in seconds; errors)."""
    latencies: list[float] = []
    errors = 0
    start = clock() + 0.05

    async def one(index: int) -> None:
        nonlocal errors
        scheduled = start + index / rate
        await asyncio.sleep(max(0.0, scheduled - clock()))
        try:
            async with http.get(url, headers={"X-Forwarded-For": client_address(index)}) as answer:
                await answer.read()
                errors += answer.status != 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            errors += 1
        latencies.append(clock() - scheduled)

    tasks = []
    for index in range(int(rate * seconds)):
        tasks.append(asyncio.ensure_future(one(index)))
        if index % 200 == 0:
            await asyncio.sleep(0)  # let the first requests go out while the rest are scheduled
    await asyncio.gather(*tasks)
    return latencies, errors


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


async def measure(args, base: str, data_dir: Path, server: subprocess.Popen) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=4)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await wait_ready(http, base, server)
        roots = embedded_servers(server.pid, data_dir)
        embed_key = re.search(r"embed key:\s+(\S+)", (data_dir / "server.log").read_text()).group(1)
        async with http.get(f"{base}/v1/public/venues/{embed_key}") as answer:
            activity_id = (await answer.json())["activities"][0]["id"]
        urls = {"healthz": f"{base}/healthz", "venue": f"{base}/v1/public/venues/{embed_key}",
                "availability": f"{base}/v1/public/venues/{embed_key}/availability?activity_id={activity_id}"}
        about = machine()
        print(f"# Floor: {about['cpus']} cores ({about['cpu_model']}), Python {about['python']}\n")
        print(f"Command: `{' '.join(['bench/floor.py', *sys.argv[1:]])}`; {args.duration:g} s measured after "
              f"{args.warmup:g} s of warm-up. Cores: CPU seconds per second of each process tree.\n")
        print("| endpoint | offered/s | errors | P50 ms | P95 ms | P99 ms | cores: workers | PostgreSQL "
              "| Redis | load generator | all | machine busy | CPU ms a request, all |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name in args.endpoints.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                await drive(http, urls[name], rate, args.warmup)
                before, busy_before = cpu_seconds_by_group(roots), cpu_times()
                started = clock()
                latencies, errors = await drive(http, urls[name], rate, args.duration)
                elapsed = clock() - started
                after, busy_after = cpu_seconds_by_group(roots), cpu_times()
                cores = {group: (after[group] - before[group]) / elapsed for group in GROUPS}
                total = sum(cores.values())
                latencies.sort()
                p50, p95, p99 = (1000 * percentile(latencies, p) for p in (50, 95, 99))
                print(f"| {name} | {rate:.0f} | {errors} | {p50:.1f} | {p95:.1f} | {p99:.1f} | "
                      + " | ".join(f"{cores[group]:.2f}" for group in GROUPS)
                      + f" | {total:.2f} | {machine_busy(busy_before, busy_after)} % | {1000 * total / rate:.2f} |",
                      flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", default="healthz,venue,availability")
    parser.add_argument("--rates", default="500,1000", help="requests per second, comma-separated")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per rate (20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first (5)")
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bookingtms-floor-"))
    env = {name: value for name, value in os.environ.items()
           if name not in ("DATABASE_DIRECT_URL", "DATABASE_READ_URL", "BOOKINGTMS_DB_PREPARED_STATEMENTS")}
    env.update({"BOOKINGTMS_DATA_DIR": str(data_dir), "DATABASE_URL": "", "REDIS_URL": "",  # embedded ones
                "BOOKINGTMS_RATE_LIMITS": "1", "BOOKINGTMS_TRUSTED_PROXIES": TRUSTED_LOOPBACK,
                "BOOKINGTMS_RUN_JOBS": "0"})
    with open(data_dir / "server.log", "w") as log:
        # cwd: no .env of the caller's may point the server elsewhere.
        server = subprocess.Popen([sys.executable, "-m", "bookingtms.cli", "serve", "--port", str(args.port),
                                   "--workers", "2", "--demo"], env=env, cwd=data_dir, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            uvloop.run(measure(args, f"http://127.0.0.1:{args.port}", data_dir, server))
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    shutil.rmtree(data_dir)  # kept (with the server's log) only when the run fails


if __name__ == "__main__":
    main()
