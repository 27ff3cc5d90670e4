"""The application's engine and the one place a request's transaction is opened.

Round trips are most of what a request costs, so a request transaction makes as few as it can:
* A pooled connection is pinged only when it has been idle for PING_AFTER_IDLE_SECONDS (the server
  or a pooler may have dropped it meanwhile); one back from another request a moment ago is not
  (SQLAlchemy's pre-ping would add BEGIN, a ping and ROLLBACK to every checkout).
* The row-level-security context travels with the transaction's BEGIN, in the same simple-query
  message (ContextConnection), instead of a statement of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bookingtms.config import Settings, get_settings
from bookingtms.db.urls import app_url
from bookingtms.metrics import MeasuredPool

_engine: AsyncEngine | None = None
_read_engine: AsyncEngine | None = None
_AFTER_COMMIT = "bookingtms.after_commit"


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


PING_AFTER_IDLE_SECONDS = 2.0
_RETURNED_AT = "bookingtms.returned_at"


class ContextConnection(asyncpg.Connection):
    """An asyncpg connection that can carry a transaction's RLS context on its BEGIN.

    `set_context` stores the set_config call here before the transaction's first statement;
    SQLAlchemy's asyncpg dialect then sends `BEGIN [READ ONLY];` through `execute`, which appends
    it, so both go in one message. What is pending is dropped when the connection goes back to the
    pool, so it can never reach another request's transaction."""

    pending_context: str | None = None
    context: tuple[str, str, str] | None = None  # (user_id, organization_id, is_platform) as last set

    async def execute(self, query: str, *args, timeout: float | None = None) -> str:
        pending = self.pending_context
        if pending is not None and not args and query.startswith("BEGIN"):
            self.pending_context = None
            query = f"{query} {pending}"
        return await super().execute(query, *args, timeout=timeout)


def _create_engine(url: str | None, settings: Settings) -> AsyncEngine:
    connect_args: dict = {"connection_class": ContextConnection}
    if not settings.db_prepared_statements:
        # Behind PgBouncer in transaction mode a prepared statement may meet another server connection.
        connect_args |= {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
    engine = create_async_engine(
        app_url(settings, url=url),
        poolclass=MeasuredPool, pool_logging_name="read" if url else "primary",  # pool use for /metrics
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=30,
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    event.listen(engine.sync_engine, "checkin", _returned)
    return engine


def _ping_if_idle(dbapi_connection, record, proxy) -> None:
    returned_at = record.info.get(_RETURNED_AT)
    if returned_at is None or time.monotonic() - returned_at < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception:
        raise exc.DisconnectionError("the pooled connection was lost while idle") from None  # the pool reconnects


def _returned(dbapi_connection, record) -> None:
    record.info[_RETURNED_AT] = time.monotonic()
    driver = record.driver_connection
    if isinstance(driver, ContextConnection):
        driver.pending_context = driver.context = None


def get_engine(settings: Settings | None = None) -> AsyncEngine:
    """The primary: every write, and every read that must see the caller's own writes."""
    global _engine
    if _engine is None:
        _engine = _create_engine(None, settings or get_settings())
    return _engine


def get_read_engine(settings: Settings | None = None) -> AsyncEngine:
    """The replica when DATABASE_READ_URL is set, else the primary."""
    global _read_engine
    settings = settings or get_settings()
    if not settings.database_read_url:
        return get_engine(settings)
    if _read_engine is None:
        _read_engine = _create_engine(settings.database_read_url, settings)
    return _read_engine


async def dispose_engine() -> None:
    global _engine, _read_engine
    for engine in (_engine, _read_engine):
        if engine is not None:
            await engine.dispose()
    _engine = _read_engine = None


async def set_context(conn: AsyncConnection, ctx: DbContext) -> None:
    """Sets the RLS context of `conn`'s transaction: with its BEGIN when that is still to be sent,
    else as a statement of its own (a transaction that changes its context half-way)."""
    values = (_uuid_text(ctx.user_id), _uuid_text(ctx.organization_id), "true" if ctx.is_platform else "false")
    driver = (await conn.get_raw_connection()).driver_connection
    if isinstance(driver, ContextConnection):
        driver.context = values
        if not driver.is_in_transaction():
            # Literals, not parameters (BEGIN goes as a simple query): UUIDs and a boolean only.
            driver.pending_context = (
                f"SELECT set_config('app.user_id', '{values[0]}', true), "
                f"set_config('app.organization_id', '{values[1]}', true), "
                f"set_config('app.is_platform', '{values[2]}', true);")
            return
    await conn.execute(_SET_CONTEXT, dict(zip(("user_id", "organization_id", "is_platform"), values)))


def _uuid_text(value: uuid.UUID | None) -> str:
    return str(uuid.UUID(str(value))) if value else ""  # canonical form, whatever it was given as


@asynccontextmanager
async def tenant_transaction(ctx: DbContext) -> AsyncIterator[AsyncConnection]:
    """One transaction with its row-level-security context set; committed when the block ends,
    rolled back if it raises. Callbacks registered with after_commit run once it has committed."""
    async with get_engine().connect() as conn:
        # Taken once: after a lost connection, reading conn.info again would quietly reconnect.
        info = conn.info
        info[_AFTER_COMMIT] = []
        try:
            async with conn.begin():
                await set_context(conn, ctx)
                yield conn
            callbacks = info[_AFTER_COMMIT]
        finally:
            info.pop(_AFTER_COMMIT, None)
    for callback in callbacks:
        await _run_quietly(callback)


@asynccontextmanager
async def read_transaction(ctx: DbContext) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction for endpoints that only read, on the replica when one is configured
    (it may lag the primary by a moment: the booking flow reads its own writes from the primary)."""
    async with get_read_engine().connect() as conn:
        # BEGIN READ ONLY in one statement (not BEGIN, then SET TRANSACTION): a round trip fewer.
        await conn.execution_options(postgresql_readonly=True)
        async with conn.begin():
            await set_context(conn, ctx)
            yield conn


@asynccontextmanager
async def lookup_connection() -> AsyncIterator[AsyncConnection]:
    """A pooled connection for the one-statement SECURITY DEFINER lookups made outside any tenant
    (embed key, login, token, API key): autocommit, so the statement is its own transaction and
    costs one round trip, not BEGIN, the statement and ROLLBACK."""
    async with get_engine().connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


def as_dicts(result) -> list[dict]:
    """A result's rows as dicts, for the lists: five times cheaper than dict(row._mapping) per row,
    which builds a key view for every row."""
    keys = tuple(result.keys())
    return [dict(zip(keys, row)) for row in result]


def after_commit(db: AsyncConnection, callback) -> None:
    """Runs `await callback()` after the tenant transaction `db` commits (never if it rolls back),
    e.g. to invalidate caches only once the change is visible to others."""
    pending = db.info.get(_AFTER_COMMIT)
    if pending is None:  # not inside tenant_transaction (a test's or a script's own connection)
        raise RuntimeError("after_commit needs a tenant_transaction")
    if callback not in pending:
        pending.append(callback)


async def _run_quietly(callback) -> None:
    """A failed after-commit step (Redis away) must not turn a committed request into an error:
    caches expire by their TTL anyway."""
    import structlog

    try:
        await callback()
    except Exception:
        structlog.get_logger("bookingtms.db").exception("after_commit_failed", callback=repr(callback))


# --------------------------------------------------------------------------------------------
# Jobs: find the organizations with work, then one tenant transaction each
# --------------------------------------------------------------------------------------------
async def organizations_with_work(lookup: str, params: dict) -> list[uuid.UUID]:
    """The organizations a SECURITY DEFINER lookup names (`lookup` is its call, e.g.
    "organizations_with_expired_holds(:n)"); it returns identifiers only, across tenants."""
    async with lookup_connection() as conn:
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
