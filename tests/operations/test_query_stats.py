"""The platform admin's view of the top queries (issue 5, item 9): GET /v1/platform/query-stats.

On the test database's server (the embedded pgserver build has no pg_stat_statements) the answer
says it is not available and why; on a Debian PostgreSQL that preloads the module, migration 0007
turns it on and the platform admin sees the statements the API really ran."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from bookingtms.config import get_settings
from bookingtms.db.urls import app_role_password, app_url
from tests.conftest import LiveServer, child_env
from tests.factories import PASSWORD, bearer, unique
from tests.infra.pgcluster import PgCluster, debian_bin_dir

KEYS = {"queryid", "query", "calls", "total_time_ms", "mean_time_ms", "rows", "shared_blks_hit", "shared_blks_read"}


def server_has_statements(owner_engine) -> bool:
    with owner_engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"))
                    .scalar())


async def test_answer_says_whether_statistics_are_available(client, platform_admin, owner_engine):
    response = await client.get("/v1/platform/query-stats", headers=platform_admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["available"] is server_has_statements(owner_engine)
    if not body["available"]:
        assert "shared_preload_libraries" in body["reason"]
        assert body["statements"] == []


async def test_only_the_platform_team_sees_query_statistics(client, tenant):
    response = await client.get("/v1/platform/query-stats", headers=tenant.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"order": "rows"}])
async def test_bad_parameters_are_named(client, platform_admin, query):
    response = await client.get("/v1/platform/query-stats", params=query, headers=platform_admin.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert {e["field"] for e in response.json()["errors"]} & {"limit", "order", "query.limit", "query.order"}


def test_the_database_function_refuses_outside_a_platform_context(settings):
    """The SECURITY DEFINER function itself checks the caller, whatever the application does."""
    engine = create_engine(app_url(settings, driver="psycopg"), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError) as refused:
            conn.execute(text("SELECT query_stats(10, 'calls')"))
        assert refused.value.orig.sqlstate == "42501"
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# A real PostgreSQL with pg_stat_statements preloaded
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stats_cluster():
    cluster = PgCluster.start(debian_bin_dir(), {"shared_preload_libraries": "pg_stat_statements"},
                              dbname="bookingtms")
    yield cluster
    cluster.stop()


def cli(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "bookingtms.cli", *args], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_platform_admin_sees_the_top_statements(stats_cluster, tmp_path):
    env = child_env({"DATABASE_URL": stats_cluster.url, "BOOKINGTMS_DATA_DIR": str(tmp_path)})
    admin_email = f"{unique('root')}@platform.example.com"
    cli(env, "create-admin", "--email", admin_email, "--password", PASSWORD)  # migrates first
    assert stats_cluster.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_stat_statements'")

    server = LiveServer({"DATABASE_URL": stats_cluster.url, "BOOKINGTMS_DATA_DIR": str(tmp_path)})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            admin = bearer(login(http, admin_email))
            slug = unique("org")
            created = http.post("/v1/platform/organizations", headers=admin, json={
                "name": f"Org {slug}", "slug": slug, "plan": "enterprise", "timezone": "Europe/Paris",
                "owner": {"email": f"owner@{slug}.example.com", "full_name": "Owner", "password": PASSWORD}})
            assert created.status_code == 201, created.text
            embed_key = created.json()["venue"]["embed_key"]
            for _ in range(5):
                assert http.get(f"/v1/public/venues/{embed_key}/availability").status_code == 200

            by_total = http.get("/v1/platform/query-stats", headers=admin)
            assert by_total.status_code == 200, by_total.text
            body = by_total.json()
            assert body["available"] is True
            statements = body["statements"]
            assert 0 < len(statements) <= 20
            assert all(set(s) >= KEYS for s in statements)
            times = [s["total_time_ms"] for s in statements]
            assert times == sorted(times, reverse=True)
            everything = http.get("/v1/platform/query-stats", params={"limit": 100, "order": "calls"},
                                  headers=admin).json()["statements"]
            calls = [s["calls"] for s in everything]
            assert calls == sorted(calls, reverse=True)
            # every API transaction first sets its row-level-security context; its constants, like
            # any value, are normalized away ($1, $2, ...)
            context = [s for s in everything if "set_config($" in s["query"]]
            assert context and context[0]["calls"] >= 5
            assert "app.user_id" not in context[0]["query"]
            assert not any(embed_key in s["query"] for s in everything)
            # Migrations set the app role's password on every start: pg_stat_statements keeps that
            # statement, and it is never shown (nor is the password in it: a SCRAM verifier is sent).
            assert stats_cluster.execute("SELECT 1 FROM pg_stat_statements WHERE query ILIKE 'alter role%'")
            assert not any("ALTER ROLE" in s["query"].upper() for s in everything)
            assert not stats_cluster.execute(
                f"SELECT 1 FROM pg_stat_statements WHERE query LIKE '%{app_role_password(get_settings())}%'")
            assert len(http.get("/v1/platform/query-stats", params={"limit": 3, "order": "mean_time"},
                                headers=admin).json()["statements"]) == 3

            owner = bearer(login(http, f"owner@{slug}.example.com"))
            refused = http.get("/v1/platform/query-stats", headers=owner)
            assert refused.status_code == 403
            assert refused.json()["code"] == "permission_denied"
    finally:
        server.stop()


def login(http: httpx.Client, email: str) -> str:
    response = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]
