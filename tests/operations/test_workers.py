"""`bookingtms serve --workers 2` on a fresh data dir with DATABASE_URL and REDIS_URL unset (issue 5,
item 6): the parent starts ONE embedded PostgreSQL and ONE Redis, migrates and creates the demo
once, and both workers serve from them; a hold made through one worker is seen through the other;
/metrics adds up both workers' samples; SIGTERM stops the workers and the embedded servers.

One test, so the fresh embedded PostgreSQL (initdb, about 20 s) is started once per run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import DATA_DIR, _free_port
from tests.operations.test_metrics import parse, value

DEMO_OWNER = ("owner@demo.bookingtms.dev", "DemoOwner!2026")
DEMO_ADMIN = ("admin@demo.bookingtms.dev", "DemoAdmin!2026")


# --------------------------------------------------------------------------------------------
# Processes, read from /proc
# --------------------------------------------------------------------------------------------
def _processes() -> dict[int, tuple[str, str, int]]:
    """pid -> (command line, working directory, parent pid) of every process we may look at."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cwd = os.readlink(entry / "cwd")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        found[int(entry.name)] = (cmdline, cwd, ppid)
    return found


def postmasters(data_dir: Path) -> list[int]:
    return [pid for pid, (cmd, _, _) in _processes().items()
            if re.search(r"/postgres -D " + re.escape(str(data_dir / "pg")) + r"( |$)", cmd)]


def redis_servers(data_dir: Path) -> list[int]:
    """Redis chdirs to its data directory, so its working directory names the data dir."""
    return [pid for pid, (cmd, cwd, _) in _processes().items()
            if "redis-server" in cmd and cwd == str(data_dir / "redis")]


def children(pid: int) -> set[int]:
    return {child for child, (_, _, ppid) in _processes().items() if ppid == pid}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent has not collected it


# --------------------------------------------------------------------------------------------
def start_server(data_dir: Path, log: Path, workers: int = 2) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR", "DATABASE_DIRECT_URL",
                                                       "DATABASE_READ_URL", "BOOKINGTMS_DB_PREPARED_STATEMENTS")}
    env.update({"BOOKINGTMS_DATA_DIR": str(data_dir), "BOOKINGTMS_RUN_JOBS": "1",
                "BOOKINGTMS_JOB_INTERVAL_SECONDS": "1", "BOOKINGTMS_LOG_LEVEL": "WARNING"})
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bookingtms.cli", "serve", "--port", str(port), "--workers", str(workers),
                             "--demo"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180  # initdb, migrations, demo
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not become ready:\n{log.read_text()[-3000:]}")


def one_client_per_worker(url: str, workers: set[int]) -> dict[int, httpx.Client]:
    """A keep-alive connection to each worker: a new connection goes to whichever worker accepts
    it, and /metrics says which one answered."""
    clients: dict[int, httpx.Client] = {}
    for _ in range(200):
        client = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1))
        pid = int(client.get("/metrics").headers["X-Worker-Pid"])
        assert pid in workers, f"answered by {pid}, not a worker of the server ({workers})"
        if pid in clients:
            client.close()
        else:
            clients[pid] = client
        if len(clients) == len(workers):
            return clients
    raise AssertionError(f"only workers {set(clients)} of {workers} answered 200 new connections")


def login(client: httpx.Client, email: str, password: str) -> dict[str, str]:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def remaining(client: httpx.Client, embed_key: str, session_id: str) -> int:
    response = client.get(f"/v1/public/venues/{embed_key}/availability", params={"days": 14})
    assert response.status_code == 200, response.text
    return next(s["capacity_remaining"] for s in response.json()["sessions"] if s["id"] == session_id)


def test_two_workers_share_one_embedded_postgres_and_redis(tmp_path):
    data_dir = tmp_path / "data"
    log = DATA_DIR / f"workers-{os.getpid()}.log"
    proc, url = start_server(data_dir, log)
    embedded: list[int] = []
    clients: dict[int, httpx.Client] = {}
    try:
        # One PostgreSQL and one Redis for the data dir, started by the parent, not per worker.
        embedded = postmasters(data_dir) + redis_servers(data_dir)
        assert len(postmasters(data_dir)) == 1, _processes()
        assert len(redis_servers(data_dir)) == 1
        workers = {pid for pid in children(proc.pid) if "multiprocessing.spawn" in _processes()[pid][0]}
        assert len(workers) == 2

        clients = one_client_per_worker(url, workers)
        first, second = clients.values()
        embed_key = re.search(r"embed key:\s+(\S+)", log.read_text()).group(1)

        # The demo was created once, by the parent.
        admin = login(first, *DEMO_ADMIN)
        demo = first.get("/v1/platform/organizations", params={"q": "demo-escapes"}, headers=admin).json()
        assert [o["slug"] for o in demo["items"]] == ["demo-escapes"]

        # A hold through one worker is seen at once through the other.
        sessions = first.get(f"/v1/public/venues/{embed_key}/availability").json()["sessions"]
        session = next(s for s in sessions if s["capacity_remaining"] >= 3)
        before = remaining(second, embed_key, session["id"])
        held = first.post(f"/v1/public/venues/{embed_key}/reservations", json={
            "session_id": session["id"], "spots": 2, "customer_email": "ann@example.com"})
        assert held.status_code == 201, held.text
        assert remaining(second, embed_key, session["id"]) == before - 2
        assert remaining(first, embed_key, session["id"]) == before - 2

        # /metrics adds up both workers, whichever of them answers.
        for client, times in ((first, 3), (second, 4)):
            for _ in range(times):
                assert client.get("/healthz").status_code == 200
        for client in (first, second):
            samples = parse(client.get("/metrics").text)
            assert value(samples, "bookingtms_http_request_duration_seconds_count",
                         method="GET", route="/healthz", status="2xx") == 7
            assert value(samples, "bookingtms_holds_total", outcome="success") == 1
            assert value(samples, "bookingtms_sse_streams") == 0
    finally:
        for client in clients.values():
            client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            deadline = time.time() + 30
            while time.time() < deadline and any(alive(pid) for pid in embedded):
                time.sleep(0.2)
            leftovers = {pid: _processes().get(pid) for pid in embedded if alive(pid)}
            for pid in leftovers:  # only the servers this test's server started
                os.kill(pid, signal.SIGKILL)

    # SIGTERM stopped everything: the parent, both workers, PostgreSQL and Redis.
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert not leftovers, f"still running after SIGTERM: {leftovers}"
    assert not [pid for pid in workers if alive(pid)]
    assert not postmasters(data_dir) and not redis_servers(data_dir)
    assert not (data_dir / "metrics" / str(proc.pid)).exists()
    # Two job loops ran side by side without tripping over each other.
    assert "Traceback" not in log.read_text() and "job_failed" not in log.read_text()


def test_one_worker_stops_its_embedded_servers_on_sigterm(tmp_path):
    """Single-process serving: uvicorn re-raises SIGTERM after its graceful shutdown, which must not
    kill the process before the embedded PostgreSQL and Redis are stopped."""
    data_dir = tmp_path / "data"
    proc, url = start_server(data_dir, tmp_path / "serve.log", workers=1)
    embedded = postmasters(data_dir) + redis_servers(data_dir)
    assert len(embedded) == 2
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    finally:
        deadline = time.time() + 30
        while time.time() < deadline and any(alive(pid) for pid in embedded):
            time.sleep(0.2)
        leftovers = [pid for pid in embedded if alive(pid)]
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0
    assert not leftovers, f"still running after SIGTERM: {leftovers}"
