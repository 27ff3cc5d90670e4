"""The two kinds of request transaction: read_transaction cannot write (BEGIN READ ONLY), and the
pooled connection it used writes again in the next tenant_transaction (the read-only setting does
not leak back into the pool); the RLS context rides on BEGIN; idle pooled connections are pinged."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from bookingtms.config import get_settings
from bookingtms.db import engine as engine_module
from bookingtms.db.engine import DbContext, get_engine, read_transaction, tenant_transaction


async def test_read_transactions_are_read_only_and_leave_the_pool_writable(tenant):
    ctx = DbContext(organization_id=uuid.UUID(tenant.organization_id))
    with pytest.raises(DBAPIError) as refused:
        async with read_transaction(ctx) as db:
            assert (await db.execute(text("SHOW transaction_read_only"))).scalar_one() == "on"
            assert (await db.execute(text("SELECT current_setting('app.organization_id')"))).scalar_one() \
                == tenant.organization_id
            await db.execute(text("UPDATE venues SET name = name WHERE organization_id = :o"),
                             {"o": tenant.organization_id})
    assert getattr(refused.value.orig, "sqlstate", None) == "25006"  # read_only_sql_transaction
    # Every pooled connection, the one just used among them, writes in a tenant transaction.
    for _ in range(get_engine().pool.size() + 1):
        async with tenant_transaction(ctx) as db:
            assert (await db.execute(text("SHOW transaction_read_only"))).scalar_one() == "off"


async def test_the_rls_context_travels_with_begin_and_never_outlives_its_transaction(tenant):
    """The context costs no statement of its own (it rides on BEGIN), and a transaction that sent
    nothing leaves nothing behind for the next user of its connection."""
    ctx = DbContext(organization_id=uuid.UUID(tenant.organization_id))
    sent: list[str] = []

    def record(conn, cursor, statement, *args):
        sent.append(statement)

    event.listen(get_engine().sync_engine, "before_cursor_execute", record)
    try:
        async with tenant_transaction(ctx) as db:
            assert (await db.execute(text("SELECT current_setting('app.organization_id')"))).scalar_one() \
                == tenant.organization_id
    finally:
        event.remove(get_engine().sync_engine, "before_cursor_execute", record)
    assert sent == ["SELECT current_setting('app.organization_id')"]

    for _ in range(get_engine().pool.size() + 1):
        async with tenant_transaction(ctx):
            pass  # no statement: the context was never sent
    for _ in range(get_engine().pool.size() + 1):
        async with get_engine().connect() as conn:
            leftover = (await conn.execute(text("SELECT current_setting('app.organization_id', true)"))).scalar()
            assert leftover in (None, "")


async def test_a_pooled_connection_lost_while_idle_is_replaced_before_use(owner_engine, monkeypatch):
    """The server (or a pooler) may drop a connection while it sits in the pool: one idle for
    PING_AFTER_IDLE_SECONDS is pinged first and replaced. One back from another request a moment
    ago is not pinged (a round trip saved on every busy request), so a loss in that moment costs
    one failed statement, after which the pool starts afresh."""
    engine = engine_module._create_engine(None, get_settings())

    async def backend_pid() -> int:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()

    def terminate(pid: int) -> None:
        with owner_engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()

    try:
        pid = await backend_pid()
        terminate(pid)
        monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # idle long enough
        assert await backend_pid() != pid

        monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)  # just back: no ping
        terminate(await backend_pid())
        with pytest.raises(DBAPIError):
            await backend_pid()
        assert await backend_pid()  # the pool replaced the lost connection
    finally:
        await engine.dispose()


async def test_lookups_outside_a_tenant_run_each_statement_as_its_own_transaction():
    """lookup_connection is autocommit: no BEGIN and ROLLBACK around a one-statement lookup (each
    statement sees its own now(), which inside one transaction would stand still)."""
    async with engine_module.lookup_connection() as conn:
        first = (await conn.execute(text("SELECT now()"))).scalar_one()
        await asyncio.sleep(0.01)
        second = (await conn.execute(text("SELECT now()"))).scalar_one()
    assert second > first
    async with tenant_transaction(DbContext()) as db:  # the pooled connection is transactional again
        first = (await db.execute(text("SELECT now()"))).scalar_one()
        await asyncio.sleep(0.01)
        assert (await db.execute(text("SELECT now()"))).scalar_one() == first
