"""The cached user state behind every token check never outlives a change."""

import json
import uuid

from bookingtms.auth import state
from bookingtms.cache import get_redis


async def test_a_reader_that_raced_a_change_cannot_recache_the_old_state(client, tenant):
    me = (await client.get("/v1/me", headers=tenant.headers)).json()
    user_id = uuid.UUID(me["id"])
    await state.token_state(user_id, "some-token-id")  # cached
    redis = get_redis()
    stale_generation = (await redis.get(f"auth:user-gen:{user_id}") or b"0").decode()

    await state.forget_user(user_id)  # a role change commits meanwhile
    stale = json.dumps({"is_active": True, "token_version": 1, "role": "super-admin",
                        "organization_id": tenant.organization_id, "organization_status": "active"})
    await redis.eval(state._SET_IF_CURRENT, 2, f"auth:user:{user_id}", f"auth:user-gen:{user_id}",
                     stale_generation, stale, 300)
    assert await redis.get(f"auth:user:{user_id}") is None

    fresh, revoked = await state.token_state(user_id, "some-token-id")  # the next reader caches the database's
    assert fresh is not None and not revoked and await redis.get(f"auth:user:{user_id}") is not None
