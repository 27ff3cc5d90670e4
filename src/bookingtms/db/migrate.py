"""Runs the Alembic migrations as the owner and lets the application role log in.

Always on the primary directly (owner_url uses DATABASE_DIRECT_URL when set): the migration
lock is a session advisory lock, which a transaction-mode PgBouncer cannot hold for us."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
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


def scram_sha256_verifier(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677). Sent instead of the
    password itself, so the plain text never reaches the server's logs or pg_stat_statements."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _password_is_current(conn, role: str, password: str) -> bool:
    """Whether the role can already log in with this password. Altering a role on every start would
    race other processes starting at the same time ("tuple concurrently updated"). Reading
    pg_authid needs a superuser; without one, the role is altered as before."""
    try:
        with conn.begin_nested():
            row = conn.execute(text("SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = :r"),
                               {"r": role}).first()
    except Exception:
        return False
    if row is None or not row.rolcanlogin or not (row.rolpassword or "").startswith("SCRAM-SHA-256$"):
        return False
    iterations, salt = row.rolpassword.split("$")[1].split(":")
    return hmac.compare_digest(scram_sha256_verifier(password, int(iterations), base64.b64decode(salt)),
                               row.rolpassword)


def run_migrations(settings: Settings) -> None:
    command.upgrade(alembic_config(settings), "head")
    engine = create_engine(owner_url(settings), poolclass=pool.NullPool)
    with engine.begin() as conn:
        # Role attributes are cluster-wide; the password is derived from the secret key.
        password = app_role_password(settings)
        if not _password_is_current(conn, settings.app_db_role, password):
            # As sent (the verifier's colons are not bind parameters).
            verifier = scram_sha256_verifier(password)
            conn.exec_driver_sql(f"ALTER ROLE {settings.app_db_role} WITH LOGIN PASSWORD '{verifier}'")
        conn.execute(text(f"GRANT CONNECT ON DATABASE \"{conn.engine.url.database}\" TO {settings.app_db_role}"))
    engine.dispose()
