"""A whole deployment per test module: its own PostgreSQL cluster(s) started with tests/infra
(a primary, a streaming replica, a PgBouncer), and a real `bookingtms serve` on top, using the
run's Redis. Nothing here touches the shared test database."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, child_env
from tests.factories import PASSWORD, PlatformAdmin, login, unique
from tests.infra.pgcluster import PgCluster, pgserver_bin_dir, start_replica


@dataclass
class Deployment:
    """A live server on its own database, with a platform admin and an HTTP client."""

    server: LiveServer
    env: dict[str, str]
    client: httpx.AsyncClient
    admin: PlatformAdmin
    servers: list = field(default_factory=list)  # the database servers, stopped last


def deployment_env(data_dir: Path, *, database_url: str, direct_url: str, read_url: str = "",
                   prepared_statements: bool = True) -> dict[str, str]:
    """The environment of a server (or CLI command) on the given databases; everything not named
    here (secret key, Redis, rate limits off) is the test run's."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return {"DATABASE_URL": database_url, "DATABASE_DIRECT_URL": direct_url, "DATABASE_READ_URL": read_url,
            "BOOKINGTMS_DB_PREPARED_STATEMENTS": "1" if prepared_statements else "0",
            "BOOKINGTMS_DATA_DIR": str(data_dir)}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`bookingtms <args>` as an operator runs it against the deployment."""
    return subprocess.run([sys.executable, "-m", "bookingtms.cli", *args], env=child_env(env),
                          capture_output=True, text=True, timeout=180)


async def start_deployment(env: dict[str, str], servers: list, workers: int = 1) -> Deployment:
    server = LiveServer(env, workers)  # migrates the fresh database as it starts
    try:
        email = f"{unique('root')}@platform.example.com"
        made = cli(env, "create-admin", "--email", email, "--password", PASSWORD)
        assert made.returncode == 0, made.stdout + made.stderr
        client = httpx.AsyncClient(base_url=server.url, timeout=60,
                                   limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))
        admin = PlatformAdmin(email=email, token=await login(client, email))
    except BaseException:
        server.stop()
        raise
    return Deployment(server=server, env=env, client=client, admin=admin, servers=servers)


async def stop_deployment(deployment: Deployment) -> None:
    await deployment.client.aclose()
    deployment.server.stop()
    for server in deployment.servers:
        server.stop()


@pytest.fixture(scope="module")
async def replicated(tmp_path_factory):
    """A live server over a real primary and a streaming replica (pg_basebackup) of it."""
    primary = PgCluster.start(pgserver_bin_dir(), dbname="bookingtms")
    replica = None
    try:
        replica = start_replica(primary)
        env = deployment_env(tmp_path_factory.mktemp("replicated"), database_url=primary.url,
                             direct_url=primary.url, read_url=replica.url)
        deployment = await start_deployment(env, [replica, primary])
    except BaseException:
        for server in (replica, primary):
            if server is not None:
                server.stop()
        raise
    deployment.primary, deployment.replica = primary, replica
    yield deployment
    await stop_deployment(deployment)
