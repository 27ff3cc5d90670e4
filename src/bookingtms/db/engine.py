"""The application's engine and the one place a request's transaction is opened."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bookingtms.config import Settings, get_settings
from bookingtms.db.urls import app_url

_engine: AsyncEngine | None = None


@dataclass(frozen=True)
class DbContext:
    """Who is asking, as row-level security sees it."""

    organization_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    is_platform: bool = False


PLATFORM_SCOPE = uuid.UUID(int=0)  # idempotency rows of requests made outside any organization

_SET_CONTEXT = text(
    "SELECT set_config('app.user_id', :user_id, true), "
    "set_config('app.organization_id', :organization_id, true), "
    "set_config('app.is_platform', :is_platform, true)"
)


def get_engine(settings: Settings | None = None) -> AsyncEngine:
    global _engine
    if _engine is None:
        settings = settings or get_settings()
        _engine = create_async_engine(
            app_url(settings),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_pre_ping=True,
            pool_timeout=30,
        )
    return _engine


async def dispose_engine() -> None:
    global _engine
    if _engine is not None:
        await _engine.dispose()
        _engine = None


async def set_context(conn: AsyncConnection, ctx: DbContext) -> None:
    await conn.execute(_SET_CONTEXT, {
        "user_id": str(ctx.user_id) if ctx.user_id else "",
        "organization_id": str(ctx.organization_id) if ctx.organization_id else "",
        "is_platform": "true" if ctx.is_platform else "false",
    })


@asynccontextmanager
async def tenant_transaction(ctx: DbContext) -> AsyncIterator[AsyncConnection]:
    """One transaction with its row-level-security context set; committed when the block ends,
    rolled back if it raises."""
    async with get_engine().begin() as conn:
        await set_context(conn, ctx)
        yield conn


# --------------------------------------------------------------------------------------------
# Jobs: find the organizations with work, then one tenant transaction each
# --------------------------------------------------------------------------------------------
async def organizations_with_work(lookup: str, params: dict) -> list[uuid.UUID]:
    """The organizations a SECURITY DEFINER lookup names (`lookup` is its call, e.g.
    "organizations_with_expired_holds(:n)"); it returns identifiers only, across tenants."""
    async with get_engine().connect() as conn:
        return list((await conn.execute(text(f"SELECT {lookup}"), params)).scalars())


async def for_each_organization(job: str, lookup: str, params: dict, step, *, is_platform: bool = False) -> int:
    """Runs `step(db, organization_id)` in its own tenant transaction for each organization with
    work and adds up what the steps return. One organization's failure is logged and rolled back
    without holding up the others."""
    import structlog

    total = 0
    for organization_id in await organizations_with_work(lookup, params):
        try:
            async with tenant_transaction(DbContext(organization_id=organization_id, is_platform=is_platform)) as db:
                total += await step(db, organization_id)
        except Exception:
            structlog.get_logger("bookingtms.jobs").exception("job_failed", job=job,
                                                             organization_id=str(organization_id))
    return total
