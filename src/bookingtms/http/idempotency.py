"""`Idempotency-Key` on creating POSTs. The key row is written in the same transaction as what
the request creates: a concurrent retry blocks on the key's unique index until the first
commits, then replays its response; if the first rolled back, the retry does the work."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Header
from fastapi.encoders import jsonable_encoder
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.errors import ValidationFailed
from bookingtms.http.responses import OrjsonResponse
from bookingtms.models import idempotency_keys

IdempotencyKey = Header(None, alias="Idempotency-Key", max_length=255)

# Built once (SQLAlchemy memoizes a statement's cache key): every keyed checkout runs them.
_CLAIM = (pg_insert(idempotency_keys).on_conflict_do_nothing(index_elements=["organization_id", "scope", "key"])
          .returning(idempotency_keys.c.id))
_FIRST = select(idempotency_keys).where(idempotency_keys.c.organization_id == bindparam("organization_id"),
                                        idempotency_keys.c.scope == bindparam("scope"),
                                        idempotency_keys.c.key == bindparam("key"))
_ANSWER = update(idempotency_keys).where(idempotency_keys.c.id == bindparam("claimed"))


def _fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(jsonable_encoder(payload), sort_keys=True).encode()).hexdigest()


async def idempotent(db: AsyncConnection, key: str | None, *, organization_id: uuid.UUID, scope: str,
                     payload: Any, create: Callable[[], Awaitable[Any]], status_code: int = 201) -> OrjsonResponse:
    """Runs `create()` once per (organization, scope, key) and answers every retry alike."""
    if key is None:
        return OrjsonResponse(jsonable_encoder(await create()), status_code=status_code)
    key = key.strip()
    if not key:
        raise ValidationFailed("Idempotency-Key must not be blank.", field="Idempotency-Key")
    request_hash = _fingerprint(payload)
    key_params = {"organization_id": organization_id, "scope": scope, "key": key}
    claimed = (await db.execute(_CLAIM, {**key_params, "request_hash": request_hash})).scalar_one_or_none()
    if claimed is None:
        first = (await db.execute(_FIRST, key_params)).one()
        if first.request_hash != request_hash:
            raise ValidationFailed("This Idempotency-Key was used with a different request.",
                                   code="idempotency_key_reused", field="Idempotency-Key")
        return OrjsonResponse(first.response_body, status_code=first.response_status,
                              headers={"Idempotent-Replayed": "true"})
    body = jsonable_encoder(await create())
    await db.execute(_ANSWER, {"claimed": claimed, "response_status": status_code, "response_body": body})
    return OrjsonResponse(body, status_code=status_code)
