"""`bench/floor.py` as the README runs it, briefly: it starts its own server, drives each endpoint
open loop and prints a row of latencies and CPU per endpoint and rate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import _free_port, child_env

FLOOR = Path(__file__).resolve().parents[2] / "bench" / "floor.py"


def test_the_floor_answers_every_request_and_prints_the_cpu_it_cost():
    run = subprocess.run(
        [sys.executable, str(FLOOR), "--endpoints", "healthz,availability", "--rates", "40", "--duration", "1",
         "--warmup", "0.2", "--port", str(_free_port())],
        env=child_env(), capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {cells[0]: cells for line in run.stdout.splitlines()
            if (cells := [c.strip() for c in line.strip("|").split("|")])[0] in ("healthz", "availability")}
    assert set(rows) == {"healthz", "availability"}, run.stdout
    for endpoint, (_, offered, answered, errors, p50, p95, p99, *cores) in rows.items():
        assert (offered, errors) == ("40", "0"), f"{endpoint}: {run.stdout}"
        assert int(answered) >= 36 and 0 < float(p50) <= float(p95) <= float(p99), f"{endpoint}: {run.stdout}"
        assert float(cores[0]) > 0, f"{endpoint}: the workers' CPU was not seen: {run.stdout}"
