"""Database URLs: the owner's (migrations, doctor) and the application role's (everything else)."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy.engine import URL, make_url

from bookingtms.config import Settings


def owner_url(settings: Settings, driver: str = "psycopg") -> URL:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set and no embedded server was started")
    return make_url(settings.database_url).set(drivername=f"postgresql+{driver}")


def app_role_password(settings: Settings) -> str:
    return hmac.new(settings.resolved_secret_key().encode(), b"db-app-role", hashlib.sha256).hexdigest()


def app_url(settings: Settings, driver: str = "asyncpg", url: str | None = None) -> URL:
    """The same server and database as DATABASE_URL, logged in as the application role."""
    base = make_url(url or settings.database_url or "")
    return base.set(drivername=f"postgresql+{driver}", username=settings.app_db_role,
                    password=app_role_password(settings))
