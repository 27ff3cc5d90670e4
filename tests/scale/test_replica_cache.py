"""With a real streaming replica (DATABASE_READ_URL), the widget's cached reads are computed on the
replica. Just after an invalidation the replica may not have replayed the change yet: such an
answer is served (replica lag) but not cached, so the widget does not show it for a whole TTL."""

from __future__ import annotations

import pytest

from tests.factories import future_session, hold, make_activity, make_tenant
from tests.infra.pgcluster import pause_replay, resume_replay, wait_for_replay

# One xdist worker runs the whole module, so its deployment starts once (scripts/test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("scale-replica-cache")


async def remaining(c, tenant, session_id: str) -> int:
    response = await c.get(f"/v1/public/venues/{tenant.embed_key}/availability")
    assert response.status_code == 200, response.text
    return {s["id"]: s["capacity_remaining"] for s in response.json()["sessions"]}[session_id]


async def test_a_lagging_replica_answer_is_not_cached_past_the_invalidation(replicated):
    c, primary, replica = replicated.client, replicated.primary, replicated.replica
    t = await make_tenant(c, replicated.admin)
    activity = await make_activity(c, t, capacity=10)
    wait_for_replay(primary, replica)
    session = await future_session(c, t, activity)
    assert await remaining(c, t, session["id"]) == 10

    pause_replay(replica)
    try:
        assert (await hold(c, t, session["id"], 3)).status_code == 201  # committed on the primary
        assert await remaining(c, t, session["id"]) == 10  # read on the paused replica: stale
    finally:
        resume_replay(replica)
    wait_for_replay(primary, replica)
    assert await remaining(c, t, session["id"]) == 7  # the stale answer was not kept
