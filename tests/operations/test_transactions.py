"""The two kinds of request transaction: read_transaction cannot write (BEGIN READ ONLY), and the
pooled connection it used writes again in the next tenant_transaction (the read-only setting does
not leak back into the pool)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

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
