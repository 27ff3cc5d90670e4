"""With a real streaming replica (DATABASE_READ_URL), the widget's cached reads are computed on the
replica. Just after an invalidation the replica may not have replayed the change yet: such an
answer is served (replica lag) but not cached, so the widget does not show it for a whole TTL."""

from __future__ import annotations

import pytest

from tests.factories import future_session, hold, make_activity, make_tenant
from tests.infra.pgcluster import PgCluster, pause_replay, pgserver_bin_dir, resume_replay, start_replica, wait_for_replay
from tests.scale.conftest import deployment_env, start_deployment, stop_deployment


@pytest.fixture(scope="module")
async def replicated(tmp_path_factory):
    primary = PgCluster.start(pgserver_bin_dir(), dbname="bookingtms")
    replica = None
    try:
        replica = start_replica(primary)
        env = deployment_env(tmp_path_factory.mktemp("cache-replica"), database_url=primary.url,
                             direct_url=primary.url, read_url=replica.url)
        deployment = await start_deployment(env, [replica, primary])
    except BaseException:
        for server in (replica, primary):
            if server is not None:
                server.stop()
        raise
    deployment.primary, deployment.replica = primary, replica
    yield deployment
    await stop_deployment(deployment)


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
