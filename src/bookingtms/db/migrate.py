"""Runs the Alembic migrations as the owner and lets the application role log in.

Always on the primary directly (owner_url uses DATABASE_DIRECT_URL when set): the migration
lock is a session advisory lock, which a transaction-mode PgBouncer cannot hold for us."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

from bookingtms.config import Settings
from bookingtms.db.urls import app_role_password, owner_url


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", owner_url(settings).render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def run_migrations(settings: Settings) -> None:
    command.upgrade(alembic_config(settings), "head")
    engine = create_engine(owner_url(settings), poolclass=pool.NullPool)
    with engine.begin() as conn:
        # Role attributes are cluster-wide; the password is derived from the secret key.
        conn.execute(text(f"ALTER ROLE {settings.app_db_role} WITH LOGIN PASSWORD '{app_role_password(settings)}'"))
        conn.execute(text(f"GRANT CONNECT ON DATABASE \"{conn.engine.url.database}\" TO {settings.app_db_role}"))
    engine.dispose()
