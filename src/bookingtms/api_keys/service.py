"""API keys: scoped to one organization and to named permissions. The secret is shown once and
stored as SHA-256 (it is 256 random bits, so a slow hash adds nothing); the prefix stays visible."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
import time
import uuid
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bookingtms.api_keys.schemas import ApiKeyCreate
from bookingtms.auth.permissions import PERMISSION_MATRIX
from bookingtms.cache import get_redis
from bookingtms.db.engine import DbContext, as_dicts, lookup_connection, tenant_transaction
from bookingtms.errors import Forbidden, NotFound, ValidationFailed
from bookingtms.http.pagination import keyset, page
from bookingtms.models import api_keys

TOKEN_PREFIX = "btms_"
PUBLIC_FIELDS = ("id", "name", "prefix", "permissions", "created_by", "last_used_at", "expires_at", "revoked_at",
                 "created_at")
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    prefix, _, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not (8 <= len(prefix) <= 32) or len(secret) < 20:
        return None
    return prefix, secret


async def create_key(db: AsyncConnection, org_id: uuid.UUID, creator_id: uuid.UUID | None,
                     creator_permissions: frozenset[str], data: ApiKeyCreate) -> dict[str, Any]:
    unknown = sorted(set(data.permissions) - PERMISSION_MATRIX.keys())
    if unknown:
        raise ValidationFailed(f"Unknown permission(s): {', '.join(unknown)}.", field="permissions")
    beyond = sorted(set(data.permissions) - creator_permissions)
    if beyond:
        raise Forbidden(f"You cannot grant permissions you do not hold: {', '.join(beyond)}.",
                        code="permission_denied", permission=beyond[0])
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(12))
    secret = secrets.token_urlsafe(32)
    row = (await db.execute(insert(api_keys).values(
        organization_id=org_id, name=data.name, prefix=prefix, secret_hash=_hash(secret),
        permissions=sorted(set(data.permissions)), created_by=creator_id, expires_at=data.expires_at,
    ).returning(*(api_keys.c[f] for f in PUBLIC_FIELDS)))).one()
    return {**row._mapping, "secret": f"{TOKEN_PREFIX}{prefix}_{secret}"}


async def list_keys(db: AsyncConnection, org_id: uuid.UUID, limit: int, after: list | None) -> dict[str, Any]:
    c = api_keys.c
    query = select(*(c[f] for f in PUBLIC_FIELDS)).where(c.organization_id == org_id)
    if (key := keyset(after)):
        query = query.where(func.row(c.name, c.id) > func.row(*key))
    rows = as_dicts(await db.execute(query.order_by(c.name, c.id).limit(limit + 1)))
    return page(rows, limit, lambda r: (r["name"], str(r["id"])))


async def revoke_key(db: AsyncConnection, org_id: uuid.UUID, key_id: uuid.UUID) -> dict[str, Any]:
    row = (await db.execute(update(api_keys).where(api_keys.c.organization_id == org_id, api_keys.c.id == key_id)
                            .values(revoked_at=func.coalesce(api_keys.c.revoked_at, func.now()))
                            .returning(api_keys.c.prefix))).first()
    if row is None:
        raise NotFound("No such API key.", code="api_key_not_found")
    return {"prefix": row.prefix}


async def forget(prefix: str) -> None:
    await get_redis().delete(f"auth:apikey:{prefix}")


async def _load(prefix: str) -> list[dict[str, Any]]:
    """The keys with this prefix (normally one), cached for 5 minutes; revoking forgets them."""
    redis = get_redis()
    cached = await redis.get(f"auth:apikey:{prefix}")
    if cached is not None:
        return json.loads(cached)
    async with lookup_connection() as conn:
        found = (await conn.execute(text("SELECT * FROM find_api_key(:p)"), {"p": prefix})).all()
    keys = []
    for ref in found:
        async with tenant_transaction(DbContext(organization_id=ref.organization_id)) as db:
            row = (await db.execute(select(api_keys).where(api_keys.c.organization_id == ref.organization_id,
                                                           api_keys.c.id == ref.key_id))).one()
        keys.append({"organization_id": str(row.organization_id), "id": str(row.id), "name": row.name,
                     "secret_hash": row.secret_hash, "permissions": row.permissions,
                     "expires_at": row.expires_at.timestamp() if row.expires_at else None,
                     "revoked": row.revoked_at is not None})
    await redis.set(f"auth:apikey:{prefix}", json.dumps(keys), ex=300)
    return keys


async def verify(token: str) -> dict[str, Any] | None:
    """The live key this bearer token names, or None (reads only; the rate limiter uses this)."""
    parsed = parse(token)
    if parsed is None:
        return None
    prefix, secret = parsed
    for key in await _load(prefix):
        if hmac.compare_digest(key["secret_hash"], _hash(secret)):
            if key["revoked"] or (key["expires_at"] and key["expires_at"] <= time.time()):
                return None
            return key
    return None


async def authenticate(token: str) -> dict[str, Any] | None:
    """verify(), and the key's last use recorded."""
    key = await verify(token)
    if key is not None:
        await _touch(key)
    return key


async def _touch(key: dict[str, Any]) -> None:
    """last_used_at, written at most once a minute per key."""
    if not await get_redis().set(f"auth:apikey-used:{key['id']}", "1", ex=60, nx=True):
        return
    org_id = uuid.UUID(key["organization_id"])
    async with tenant_transaction(DbContext(organization_id=org_id)) as db:
        await db.execute(update(api_keys).where(api_keys.c.organization_id == org_id,
                                                api_keys.c.id == uuid.UUID(key["id"])).values(last_used_at=func.now()))
