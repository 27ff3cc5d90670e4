"""The platform admin's view of pg_stat_statements: the statements that cost the database most.

The numbers come from the SECURITY DEFINER function query_stats() (migration 0007), which answers
only a platform context and only for this database; when the server does not preload
pg_stat_statements it answers {available: false, reason}."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

Order = Literal["total_time", "mean_time", "calls"]


async def top_statements(db: AsyncConnection, limit: int, order: Order) -> dict[str, Any]:
    return (await db.execute(text("SELECT query_stats(:limit, :order)"), {"limit": limit, "order": order})).scalar_one()
