"""What a token check needs to know about a user or an API key, cached in Redis (PRD 3.3:
permissions 5 minutes) and invalidated the moment it changes, so revocation is immediate."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import text

from bookingtms.cache import get_redis
from bookingtms.db.engine import lookup_connection

log = structlog.get_logger("bookingtms.auth")
TTL_SECONDS = 300


@dataclass(frozen=True)
class UserState:
    is_active: bool
    token_version: int
    role: str
    organization_id: str | None
    organization_status: str | None


def _user_key(user_id: uuid.UUID) -> str:
    return f"auth:user:{user_id}"


def _generation_key(user_id: uuid.UUID) -> str:
    return f"auth:user-gen:{user_id}"


# Stores the state only if no forget_user happened since the reader looked at the generation:
# a request that read the database just before a change committed cannot re-cache stale state.
_SET_IF_CURRENT = """
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return 1
"""


async def token_state(user_id: uuid.UUID, jti: str) -> tuple[UserState | None, bool]:
    """What an access token check needs, in one Redis round trip: the user's state (None: no such
    user) and whether this token was revoked (logout)."""
    generation = revoked = None
    try:
        cached, generation, revoked = await get_redis().mget(_user_key(user_id), _generation_key(user_id),
                                                             _revoked_key(jti))
        if cached:
            return UserState(**json.loads(cached)), revoked is not None
    except Exception:  # Redis down: the user from the database, never trusting the token alone
        log.warning("auth_cache_unavailable")
    async with lookup_connection() as conn:
        row = (await conn.execute(text("SELECT * FROM user_auth_state(:u)"), {"u": user_id})).first()
    if row is None:
        return None, revoked is not None
    state = UserState(is_active=row.is_active, token_version=row.token_version, role=row.role,
                      organization_id=str(row.organization_id) if row.organization_id else None,
                      organization_status=row.organization_status)
    try:
        await get_redis().eval(_SET_IF_CURRENT, 2, _user_key(user_id), _generation_key(user_id),
                               (generation or b"0").decode(), json.dumps(state.__dict__), TTL_SECONDS)
    except Exception:
        pass
    return state, revoked is not None


async def forget_user(user_id: uuid.UUID) -> None:
    """Call after the user's role, activity or token version changed (after commit)."""
    pipe = get_redis().pipeline(transaction=True)
    pipe.incr(_generation_key(user_id))
    pipe.expire(_generation_key(user_id), 2 * TTL_SECONDS)
    pipe.delete(_user_key(user_id))
    await pipe.execute()


def _revoked_key(jti: str) -> str:
    return f"auth:revoked:{jti}"


async def revoke_access_token(jti: str, expires_at: int) -> None:
    """Logout: this access token stops working now, not at its expiry."""
    ttl = max(1, expires_at - int(time.time()))
    await get_redis().set(_revoked_key(jti), "1", ex=ttl)


def _family_key(family_id: uuid.UUID) -> str:
    return f"auth:family:{family_id}"


async def remember_family_token(family_id: uuid.UUID, jti: str, expires_at: int) -> None:
    """Notes an access token issued to a sign-in, so ending the sign-in can end the token too."""
    key = _family_key(family_id)
    try:
        await get_redis().hset(key, jti, str(expires_at))
        await get_redis().expireat(key, expires_at + 5)  # tokens issued later expire later
    except Exception:
        log.warning("auth_cache_unavailable")


async def revoke_family_access_tokens(family_id: uuid.UUID) -> None:
    """Every access token still live from this sign-in stops now (logout, refresh-token reuse)."""
    key = _family_key(family_id)
    tokens = await get_redis().hgetall(key)
    now = int(time.time())
    for jti, expires_at in tokens.items():
        if int(expires_at) > now:
            await revoke_access_token(jti.decode() if isinstance(jti, bytes) else jti, int(expires_at))
    await get_redis().delete(key)


async def claim_otp(user_id: uuid.UUID, code: str, ttl_seconds: int = 120) -> bool:
    """A TOTP code is good once: False if this user already used it (within its validity)."""
    return bool(await get_redis().set(f"auth:otp-used:{user_id}:{code}", "1", nx=True, ex=ttl_seconds))


async def put_mfa_ticket(ticket_hash: str, payload: dict, ttl_seconds: int) -> None:
    await get_redis().set(f"auth:mfa-ticket:{ticket_hash}", json.dumps(payload), ex=ttl_seconds)


async def get_mfa_ticket(ticket_hash: str) -> dict | None:
    raw = await get_redis().get(f"auth:mfa-ticket:{ticket_hash}")
    return json.loads(raw) if raw else None


async def drop_mfa_ticket(ticket_hash: str) -> bool:
    return bool(await get_redis().delete(f"auth:mfa-ticket:{ticket_hash}"))


async def put_oidc_attempt(state_hash: str, payload: dict, ttl_seconds: int) -> None:
    await get_redis().set(f"auth:oidc:{state_hash}", json.dumps(payload), ex=ttl_seconds)


async def take_oidc_attempt(state_hash: str) -> dict | None:
    """Single use: the first callback with this state takes it."""
    raw = await get_redis().getdel(f"auth:oidc:{state_hash}")
    return json.loads(raw) if raw else None
