"""`bench/floor.py` as the README runs it, briefly: it starts its own server on embedded PostgreSQL
and Redis, drives each endpoint open loop and prints a row of latencies and CPU per endpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import _free_port, child_env

FLOOR = Path(__file__).resolve().parents[2] / "bench" / "floor.py"


def test_the_floor_answers_every_request_and_prints_the_cpu_it_cost():
    run = subprocess.run(
        [sys.executable, str(FLOOR), "--endpoints", "healthz,availability", "--rates", "100", "--duration", "2",
         "--warmup", "0.5", "--port", str(_free_port())],
        env=child_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {cells[0]: cells for line in run.stdout.splitlines()
            if (cells := [c.strip() for c in line.strip("|").split("|")])[0] in ("healthz", "availability")}
    assert set(rows) == {"healthz", "availability"}, run.stdout
    for endpoint, (_, offered, errors, p50, p95, p99, workers, postgres, redis, *_) in rows.items():
        assert (offered, errors) == ("100", "0"), f"{endpoint}: {run.stdout}"
        assert 0 < float(p50) <= float(p95) <= float(p99), f"{endpoint}: {run.stdout}"
        # 200 requests cost the workers some 50 ms of CPU: five of /proc's 10 ms ticks at least.
        assert float(workers) > 0 and float(postgres) >= 0 and float(redis) >= 0, f"{endpoint}: {run.stdout}"
    assert float(rows["availability"][8]) > 0, f"the cached answers come from Redis: {run.stdout}"
