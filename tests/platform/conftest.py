"""Fixtures for the platform tests: audit rows as stored, and SQL as the database owner."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text


@pytest.fixture
def audit_rows(owner_engine):
    """audit_rows(organization_id or None, action=None, target_id=None) -> rows as dicts, oldest first."""

    def read(organization_id: str | None, action: str | None = None, target_id: str | None = None) -> list[dict[str, Any]]:
        where = ["organization_id IS NULL" if organization_id is None else "organization_id = :org"]
        params: dict[str, Any] = {"org": organization_id}
        if action:
            where.append("action = :action")
            params["action"] = action
        if target_id:
            where.append("target_id = :target")
            params["target"] = str(target_id)
        with owner_engine.connect() as conn:
            rows = conn.execute(text(f"SELECT organization_id, actor_id, actor_type, actor_label, action, target_type, "
                                     f"target_id, changes, request_id FROM audit_log WHERE {' AND '.join(where)} "
                                     f"ORDER BY id"), params).mappings().all()
        return [dict(r) | {"changes": r["changes"] if isinstance(r["changes"], dict) else json.loads(r["changes"])}
                for r in rows]

    return read


@pytest.fixture
def owner_sql(owner_engine):
    """Runs one statement as the database owner (past row-level security) and commits."""

    def run(sql: str, **params: Any):
        with owner_engine.begin() as conn:
            return conn.execute(text(sql), params)

    return run
