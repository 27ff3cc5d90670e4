"""Database URLs: the owner's (migrations, doctor) and the application role's (everything else).

DATABASE_URL may point at PgBouncer in transaction mode; the app role's pooled traffic goes
there. What needs a session of its own (migrations hold a session advisory lock; LISTEN keeps
the connection) uses DATABASE_DIRECT_URL, the primary itself (defaults to DATABASE_URL)."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy.engine import URL, make_url

from bookingtms.config import Settings


def direct_database_url(settings: Settings) -> str:
    """The primary without a pooler in between."""
    url = settings.database_direct_url or settings.database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set and no embedded server was started")
    return url


def owner_url(settings: Settings, driver: str = "psycopg") -> URL:
    """The owner, always directly on the primary: its few connections (migrations, doctor, admin
    scripts) need session features and gain nothing from pooling."""
    return make_url(direct_database_url(settings)).set(drivername=f"postgresql+{driver}")


def app_role_password(settings: Settings) -> str:
    return hmac.new(settings.resolved_secret_key().encode(), b"db-app-role", hashlib.sha256).hexdigest()


def app_url(settings: Settings, driver: str = "asyncpg", url: str | None = None) -> URL:
    """The same server and database as DATABASE_URL (or `url`), logged in as the application role."""
    base = make_url(url or settings.database_url or "")
    return base.set(drivername=f"postgresql+{driver}", username=settings.app_db_role,
                    password=app_role_password(settings))


def app_direct_url(settings: Settings, driver: str = "asyncpg") -> URL:
    """The application role directly on the primary, for LISTEN (a transaction-mode pooler would
    hand the listening session to other clients)."""
    return app_url(settings, driver, url=direct_database_url(settings))
