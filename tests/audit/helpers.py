"""Shared by the audit tests: requests with a known X-Request-ID, and the audit rows they left."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text

AUDIT_ROW = text("""
    SELECT organization_id::text AS organization_id, actor_id::text AS actor_id, actor_type, actor_label, action,
           target_type, target_id, request_id, host(ip) AS ip, changes, created_at, chain_seq
      FROM audit_log WHERE request_id = :r ORDER BY chain_seq
""")


def request_id() -> str:
    return f"test-{uuid.uuid4().hex}"


async def send(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], *,
               json: Any = None, params: dict | None = None, expect: int | None = None) -> tuple[httpx.Response, str]:
    rid = request_id()
    response = await client.request(method, path, headers={**headers, "X-Request-ID": rid}, json=json, params=params)
    assert response.headers["x-request-id"] == rid
    if expect is not None:
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
    return response, rid


def audit_rows(owner_engine, rid: str) -> list:
    with owner_engine.connect() as conn:
        return conn.execute(AUDIT_ROW, {"r": rid}).all()


def one_audit_row(owner_engine, rid: str):
    rows = audit_rows(owner_engine, rid)
    assert len(rows) == 1, f"expected one audit row for request {rid}, found {[r.action for r in rows]}"
    return rows[0]
