"""Row-level security as the database enforces it, checked at the SQL level as the application
role (`bookingtms_app`), with two real tenants built through the API.

What an operator relies on: whatever the application code does, a connection of the app role sees
and writes only the organization named in its transaction's context, and nothing at all without
one."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from bookingtms.db.urls import app_url
from tests.factories import (
    add_staff,
    checkout,
    future_session,
    make_activity,
    make_tenant,
)

# Every table that holds one organization's data, and the column naming the organization.
TENANT_TABLES: dict[str, str] = {
    "venues": "organization_id",
    "activities": "organization_id",
    "activity_sessions": "organization_id",
    "customers": "organization_id",
    "slot_reservations": "organization_id",
    "bookings": "organization_id",
    "payments": "organization_id",
    "promo_codes": "organization_id",
    "notification_outbox": "organization_id",
    "idempotency_keys": "organization_id",
    "users": "organization_id",
    "organizations": "id",
    "audit_log": "organization_id",
}

HELPERS = ("get_my_organization_id", "is_platform_admin", "can_access_organization")
INSUFFICIENT_PRIVILEGE = "42501"  # also the SQLSTATE of a row-level security WITH CHECK violation


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def set_context(conn: Connection, *, org: str | None = None, user: str | None = None,
                platform: bool | None = None) -> None:
    """Sets the transaction-local context the way the application does (set_config(..., true))."""
    for name, value in (("app.organization_id", org), ("app.user_id", user),
                        ("app.is_platform", None if platform is None else ("true" if platform else "false"))):
        if value is not None:
            conn.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": str(value)})


@contextmanager
def app_tx(engine: Engine, **context) -> Iterator[Connection]:
    """One transaction as the application role with the given context; rolled back at the end so
    that a test never leaves anything behind."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            set_context(conn, **context)
            yield conn
        finally:
            trans.rollback()


def sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def scalar(engine_or_conn, sql: str, **params):
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    return engine_or_conn.execute(text(sql), params).scalar()


def snapshot(owner: Engine, table: str, org: str) -> tuple[int, str | None]:
    """Count and fingerprint of an organization's rows, as the owner sees them."""
    column = TENANT_TABLES[table]
    with owner.connect() as conn:
        return tuple(conn.execute(text(
            f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t WHERE {column} = :org"
        ), {"org": org}).one())


# ------------------------------------------------------------------------------------------------
# Fixtures: two tenants with a venue, an activity, sessions, a hold-and-checkout booking, a
# customer, a payment, outbox rows, an idempotency key, a promo code, staff and audit rows.
# ------------------------------------------------------------------------------------------------
@dataclass
class Org:
    id: str
    venue_id: str
    activity_id: str
    session_id: str
    booking_id: str
    reservation_id: str
    customer_id: str
    owner_id: str
    staff_email: str


@dataclass
class World:
    a: Org
    b: Org


async def _populated_org(client, platform_admin, owner: Engine) -> Org:
    tenant = await make_tenant(client, platform_admin)
    activity = await make_activity(client, tenant, capacity=6)
    session = await future_session(client, tenant, activity)
    email = f"guest-{uuid.uuid4().hex[:8]}@example.com"
    held = await client.post(f"/v1/public/venues/{tenant.embed_key}/reservations",
                             headers={"Idempotency-Key": uuid.uuid4().hex},
                             json={"session_id": session["id"], "spots": 2, "customer_email": email})
    assert held.status_code == 201, held.text
    done = await checkout(client, tenant, held.json()["reservation_id"], email)
    assert done.status_code == 201, done.text
    await add_staff(client, tenant, "staff")
    org = tenant.organization_id
    with owner.begin() as conn:
        customer_id = conn.execute(text("SELECT id FROM customers WHERE organization_id = :o AND email = :e"),
                                   {"o": org, "e": email}).scalar_one()
        owner_id = conn.execute(text("SELECT owner_id FROM organizations WHERE id = :o"), {"o": org}).scalar_one()
        staff_email = conn.execute(text("SELECT email FROM users WHERE organization_id = :o AND role = 'staff'"),
                                   {"o": org}).scalar_one()
        # No endpoint writes these yet; put one row of each in place so their policies are exercised.
        conn.execute(text("INSERT INTO promo_codes (organization_id, code, discount_type, discount_value) "
                          "VALUES (:o, :c, 'percent', 10)"), {"o": org, "c": f"SAVE{uuid.uuid4().hex[:6].upper()}"})
        conn.execute(text("INSERT INTO audit_log (organization_id, actor_type, action, target_type, target_id) "
                          "VALUES (:o, 'user', 'test.seeded', 'organization', :t)"), {"o": org, "t": org})
    return Org(id=org, venue_id=tenant.venue_id, activity_id=activity["id"], session_id=session["id"],
               booking_id=done.json()["booking"]["id"], reservation_id=held.json()["reservation_id"],
               customer_id=str(customer_id), owner_id=str(owner_id), staff_email=staff_email)


@pytest.fixture(scope="module")
def owner(owner_engine):
    return owner_engine


@pytest.fixture(scope="module")
def app_engine(settings):
    engine = create_engine(app_url(settings, driver="psycopg"), pool_size=2, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
async def world(client, platform_admin, owner) -> World:
    a = await _populated_org(client, platform_admin, owner)
    b = await _populated_org(client, platform_admin, owner)
    with owner.begin() as conn:  # a platform-wide audit event, which no organization may read
        conn.execute(text("INSERT INTO audit_log (organization_id, actor_type, action) "
                          "VALUES (NULL, 'system', 'test.platform_event')"))
    return World(a=a, b=b)


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["never_set", "set_empty"])
def test_without_context_every_tenant_table_shows_no_rows(world, owner, app_engine, how):
    context = {} if how == "never_set" else {"org": "", "user": "", "platform": False}
    for table in TENANT_TABLES:
        assert scalar(owner, f"SELECT count(*) FROM {table}") > 0, f"the owner should see rows in {table}"
        with app_tx(app_engine, **context) as conn:
            assert scalar(conn, f"SELECT count(*) FROM {table}") == 0, f"{table} leaks rows without a context"


@pytest.mark.parametrize("side", ["a", "b"])
def test_organization_context_shows_only_that_organizations_rows(world, owner, app_engine, side):
    me, other = (world.a, world.b) if side == "a" else (world.b, world.a)
    for table, column in TENANT_TABLES.items():
        mine = scalar(owner, f"SELECT count(*) FROM {table} WHERE {column} = :o", o=me.id)
        assert mine > 0, f"the fixture should have put rows of {me.id} in {table}"
        with app_tx(app_engine, org=me.id) as conn:
            seen = conn.execute(text(f"SELECT {column} FROM {table}")).scalars().all()
        assert {str(v) for v in seen} == {me.id}, f"{table}: saw organizations {set(map(str, seen))}"
        assert len(seen) == mine, f"{table}: saw {len(seen)} of the organization's {mine} rows"

    lookups = {"venues": other.venue_id, "activities": other.activity_id, "activity_sessions": other.session_id,
               "bookings": other.booking_id, "slot_reservations": other.reservation_id,
               "customers": other.customer_id, "users": other.owner_id, "organizations": other.id}
    with app_tx(app_engine, org=me.id) as conn:
        for table, other_id in lookups.items():
            assert scalar(conn, f"SELECT count(*) FROM {table} WHERE id = :id", id=other_id) == 0, table
        # Joins and aggregates go through the same policies.
        assert scalar(conn, "SELECT count(*) FROM bookings b JOIN customers c ON c.id = b.customer_id "
                            "WHERE c.organization_id = :o", o=other.id) == 0
        assert scalar(conn, "SELECT count(*) FROM payments WHERE booking_id = :b", b=other.booking_id) == 0


def test_platform_context_sees_organizations_but_no_tenant_data(world, owner, app_engine):
    """A platform admin sees a tenant's data only under an explicit access grant (DESIGN.md); the
    bare platform context lists organizations, and nothing inside them."""
    with app_tx(app_engine, platform=True) as conn:
        orgs = set(map(str, conn.execute(text("SELECT id FROM organizations")).scalars()))
        assert {world.a.id, world.b.id} <= orgs
        for table in TENANT_TABLES:
            if table in ("organizations", "users", "audit_log", "idempotency_keys"):
                continue  # the platform's own rows live there (organization NULL / the nil UUID)
            assert scalar(conn, f"SELECT count(*) FROM {table}") == 0, f"platform context reads {table}"
        assert scalar(conn, "SELECT count(*) FROM users WHERE organization_id IS NOT NULL") == 0
        # Of the audit trail, only what platform admins themselves did; tenant events stay the tenant's.
        assert scalar(conn, "SELECT count(*) FROM audit_log WHERE organization_id IS NOT NULL "
                            "AND actor_type <> 'platform'") == 0
        assert scalar(conn, "SELECT count(*) FROM idempotency_keys WHERE organization_id IN (:a, :b)",
                      a=world.a.id, b=world.b.id) == 0


def test_reserve_session_capacity_cannot_reach_another_tenants_session(world, owner, app_engine):
    """The spec's optimistic-locking function runs with the caller's rights: B's session is unknown to A."""
    before = snapshot(owner, "activity_sessions", world.b.id)
    with owner.connect() as conn:
        version = conn.execute(text("SELECT version FROM activity_sessions WHERE id = :s"),
                               {"s": world.b.session_id}).scalar_one()
    with app_engine.connect() as conn, conn.begin():
        set_context(conn, org=world.a.id)
        result = conn.execute(text("SELECT * FROM reserve_session_capacity(:s, 1, :v)"),
                              {"s": world.b.session_id, "v": version}).one()
    assert result.success is False and result.remaining is None, result
    assert snapshot(owner, "activity_sessions", world.b.id) == before


def test_context_does_not_outlive_its_transaction(world, app_engine):
    """A pooled connection reused by the next request must not keep the last tenant's context."""
    with app_engine.connect() as conn:
        with conn.begin():
            set_context(conn, org=world.a.id)
            assert scalar(conn, "SELECT count(*) FROM venues") >= 1
        with conn.begin():
            assert scalar(conn, "SELECT count(*) FROM venues") == 0
            assert scalar(conn, "SELECT get_my_organization_id()") is None


def test_row_security_cannot_be_switched_off_by_the_app_role(world, app_engine):
    with app_engine.connect() as conn:
        conn.execute(text("SET row_security = off"))
        with pytest.raises(DBAPIError) as raised:
            conn.execute(text("SELECT count(*) FROM bookings"))
        assert sqlstate(raised.value) == INSUFFICIENT_PRIVILEGE
        assert "row-level security" in str(raised.value.orig)
        conn.rollback()
        conn.invalidate()  # never hand a connection with this setting back to the pool


# ------------------------------------------------------------------------------------------------
# Writing into another tenant
# ------------------------------------------------------------------------------------------------
def _copy_of_row(owner: Engine, table: str, org: str) -> dict:
    """One of `org`'s rows of `table` as JSON, given a fresh id (and fresh unique values)."""
    column = TENANT_TABLES[table]
    with owner.connect() as conn:
        row = conn.execute(text(f"SELECT to_jsonb(t) FROM {table} t WHERE {column} = :o LIMIT 1"), {"o": org}).scalar_one()
    row["id"] = str(uuid.uuid4())
    for key, value in (("email", f"x{uuid.uuid4().hex[:8]}@example.com"), ("slug", f"x{uuid.uuid4().hex[:8]}"),
                       ("embed_key", uuid.uuid4().hex), ("booking_reference", uuid.uuid4().hex[:10].upper()),
                       ("code", uuid.uuid4().hex[:8].upper()), ("key", uuid.uuid4().hex)):
        if key in row:
            row[key] = value
    return row


def _assert_refused_by_rls(engine: Engine, sql: str, params: dict, org: str) -> None:
    with pytest.raises(DBAPIError) as raised, app_tx(engine, org=org) as conn:
        conn.execute(text(sql), params)
    assert sqlstate(raised.value) == INSUFFICIENT_PRIVILEGE, raised.value
    assert "row-level security" in str(raised.value.orig), raised.value


@pytest.mark.parametrize("table", [t for t in TENANT_TABLES if t != "audit_log"])
def test_writing_another_organizations_rows_is_refused(world, owner, app_engine, table):
    a, b = world.a, world.b
    column = TENANT_TABLES[table]
    before_b, before_a = snapshot(owner, table, b.id), snapshot(owner, table, a.id)

    # INSERT a row for B while acting as A: the WITH CHECK of the policy refuses it.
    row = _copy_of_row(owner, table, b.id)
    if table == "organizations":
        row["name"] = "Intruder"
    _assert_refused_by_rls(app_engine, f"INSERT INTO {table} SELECT * FROM jsonb_populate_record(NULL::{table}, "
                                       "CAST(:row AS jsonb))", {"row": _json(row)}, a.id)

    # UPDATE and DELETE of B's rows as A touch nothing: the rows are invisible.
    with app_engine.connect() as conn, conn.begin():
        set_context(conn, org=a.id)
        updated = conn.execute(text(f"UPDATE {table} SET {column} = {column} WHERE {column} = :b"), {"b": b.id})
        assert updated.rowcount == 0
        if table != "organizations":  # the app role may not delete organizations at all
            deleted = conn.execute(text(f"DELETE FROM {table} WHERE {column} = :b"), {"b": b.id})
            assert deleted.rowcount == 0

    # Moving one of A's own rows over to B is refused too.
    if table != "organizations":
        _assert_refused_by_rls(app_engine, f"UPDATE {table} SET organization_id = :b "
                                           f"WHERE ctid = (SELECT ctid FROM {table} LIMIT 1)", {"b": b.id}, a.id)

    assert snapshot(owner, table, b.id) == before_b, f"{table}: B's rows changed"
    assert snapshot(owner, table, a.id) == before_a, f"{table}: A's rows changed"


def test_audit_rows_for_another_organization_or_none_are_refused(world, owner, app_engine):
    before = scalar(owner, "SELECT count(*) FROM audit_log")
    for target in (world.b.id, None):
        _assert_refused_by_rls(app_engine, "INSERT INTO audit_log (organization_id, action) VALUES (:o, 'forged')",
                               {"o": target}, world.a.id)
    assert scalar(owner, "SELECT count(*) FROM audit_log") == before


def test_a_tenant_row_cannot_point_at_another_tenants_row(world, owner, app_engine):
    """The composite foreign keys: an activity of A on B's venue, a booking of A on B's session."""
    before = snapshot(owner, "activities", world.a.id)
    with pytest.raises(DBAPIError) as raised, app_tx(app_engine, org=world.a.id) as conn:
        conn.execute(text(
            "INSERT INTO activities (organization_id, venue_id, name, duration_minutes, capacity, max_players, "
            "price_amount) VALUES (:a, :venue, 'Cross-tenant', 60, 4, 4, 100)"), {"a": world.a.id,
                                                                                  "venue": world.b.venue_id})
    assert sqlstate(raised.value) == "23503", raised.value  # foreign_key_violation
    with pytest.raises(DBAPIError) as raised, app_tx(app_engine, org=world.a.id) as conn:
        conn.execute(text("INSERT INTO slot_reservations (organization_id, session_id, customer_email, "
                          "spots_reserved, expires_at) VALUES (:a, :s, 'x@example.com', 1, now())"),
                     {"a": world.a.id, "s": world.b.session_id})
    assert sqlstate(raised.value) == "23503", raised.value
    assert snapshot(owner, "activities", world.a.id) == before


def _json(value) -> str:
    import json

    return json.dumps(value)


# ------------------------------------------------------------------------------------------------
# The role, the tables and the helper functions
# ------------------------------------------------------------------------------------------------
def test_app_role_owns_nothing_and_cannot_bypass_rls(world, owner, app_engine, settings):
    role = settings.app_db_role
    assert scalar(app_engine, "SELECT current_user") == role
    with owner.connect() as conn:
        attrs = conn.execute(text("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles "
                                  "WHERE rolname = :r"), {"r": role}).one()
        assert tuple(attrs) == (False, False, False, False), attrs
        owned = {
            "relations": "SELECT count(*) FROM pg_class WHERE relowner = CAST(:r AS regrole)",
            "functions": "SELECT count(*) FROM pg_proc WHERE proowner = CAST(:r AS regrole)",
            "schemas": "SELECT count(*) FROM pg_namespace WHERE nspowner = CAST(:r AS regrole)",
            "types": "SELECT count(*) FROM pg_type WHERE typowner = CAST(:r AS regrole)",
            "databases": "SELECT count(*) FROM pg_database WHERE datdba = CAST(:r AS regrole)",
        }
        for what, sql in owned.items():
            assert conn.execute(text(sql), {"r": role}).scalar() == 0, f"{role} owns {what}"
        # Nor can it become a role that owns the tables, or one that bypasses RLS.
        borrowed = conn.execute(text("""
            SELECT r.rolname FROM pg_roles r
             WHERE r.rolname <> :r AND pg_has_role(:r, r.oid, 'MEMBER')
               AND (r.rolsuper OR r.rolbypassrls
                    OR EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid
                                AND c.relnamespace = 'public'::regnamespace))
        """), {"r": role}).scalars().all()
        assert borrowed == [], f"{role} is a member of {borrowed}"


def test_rls_is_enabled_and_forced_on_every_tenant_table(world, owner):
    with owner.connect() as conn:
        with_org_column = set(conn.execute(text(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND column_name = 'organization_id'")).scalars())
        flags = {r.relname: r for r in conn.execute(text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies "
            "FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"))}
    for table in set(TENANT_TABLES) | with_org_column:
        assert flags[table].relrowsecurity, f"RLS is not enabled on {table}"
        assert flags[table].relforcerowsecurity, f"RLS is not forced on {table}"
        assert flags[table].policies > 0, f"{table} has no policy"


def test_context_helpers_are_stable_security_definer_with_fixed_search_path(owner):
    with owner.connect() as conn:
        rows = {r.proname: r for r in conn.execute(text(
            "SELECT proname, prosecdef, provolatile, proconfig FROM pg_proc "
            "WHERE pronamespace = 'public'::regnamespace AND (proname = ANY(:names) OR prosecdef)"),
            {"names": list(HELPERS)})}
    for name in HELPERS:
        assert name in rows, f"{name}() does not exist"
        assert rows[name].prosecdef, f"{name}() is not SECURITY DEFINER"
        assert rows[name].provolatile == "s", f"{name}() is not STABLE"
    for name, row in rows.items():  # every SECURITY DEFINER function, the helpers included
        paths = [c for c in (row.proconfig or []) if c.startswith("search_path=")]
        assert paths, f"SECURITY DEFINER {name}() has no fixed search_path"
        assert paths[0].replace(" ", "").split("=", 1)[1].split(",")[-1] == "pg_temp", \
            f"{name}(): pg_temp should come last in {paths[0]}"


def test_context_helpers_answer_from_the_context(world, app_engine):
    a, b = world.a.id, world.b.id
    check = ("SELECT get_my_organization_id()::text, is_platform_admin(), can_access_organization(CAST(:a AS uuid)), "
             "can_access_organization(CAST(:b AS uuid)), can_access_organization(NULL)")
    cases = [
        ({}, (None, False, False, False, False)),
        ({"org": a}, (a, False, True, False, False)),
        ({"org": a, "platform": False}, (a, False, True, False, False)),
        ({"platform": True}, (None, True, True, True, False)),
        ({"user": world.a.owner_id}, (None, False, False, False, False)),
    ]
    for context, expected in cases:
        with app_tx(app_engine, **context) as conn:
            got = tuple(conn.execute(text(check), {"a": a, "b": b}).one())
        # Access is granted only on a true answer; SQL NULL (no context to compare with) denies, as in a policy.
        got = got[:2] + tuple(bool(v) for v in got[2:])
        assert got == expected, context


def test_policies_call_the_helpers_once_per_statement(owner):
    """Each helper call in a policy is wrapped as (SELECT fn()) and no policy reads a table."""
    with owner.connect() as conn:
        policies = conn.execute(text(
            "SELECT tablename, policyname, qual, with_check FROM pg_policies WHERE schemaname = 'public'")).all()
    by_table: dict[str, list[str]] = {}
    for p in policies:
        for expr in (p.qual, p.with_check):
            if not expr:
                continue
            by_table.setdefault(p.tablename, []).append(expr)
            for name in (*HELPERS, "current_app_user_id"):
                calls = len(re.findall(rf"\b{name}\(", expr))
                wrapped = len(re.findall(rf"\(\s*SELECT\s+{name}\(", expr))
                assert calls == wrapped, f"{p.tablename}.{p.policyname}: {name}() not wrapped as (SELECT ...): {expr}"
            assert not re.search(r"\bFROM\b", expr, re.IGNORECASE), \
                f"{p.tablename}.{p.policyname} queries a table: {expr}"
    for table in TENANT_TABLES:
        exprs = by_table.get(table, [])
        assert any("get_my_organization_id()" in e or "can_access_organization(" in e for e in exprs), \
            f"no policy of {table} scopes it to the caller's organization"


def test_users_can_be_queried_under_every_kind_of_context(world, owner, app_engine):
    """No recursion between the users policy and anything it calls, whatever the context."""
    with owner.connect() as conn:
        platform_users = conn.execute(text("SELECT count(*) FROM users WHERE organization_id IS NULL")).scalar()
        a_users = conn.execute(text("SELECT count(*) FROM users WHERE organization_id = :o"), {"o": world.a.id}).scalar()
    assert platform_users >= 1 and a_users >= 2
    query = ("SELECT u.id::text, u.organization_id::text FROM users u "
             "LEFT JOIN organizations o ON o.id = u.organization_id ORDER BY u.email")
    contexts = {
        "none": ({}, lambda rows: rows == []),
        "organization": ({"org": world.a.id},
                         lambda rows: len(rows) == a_users and {r[1] for r in rows} == {world.a.id}),
        "platform": ({"platform": True, "user": str(uuid.uuid4())},
                     lambda rows: len(rows) == platform_users and {r[1] for r in rows} == {None}),
        "user only": ({"user": world.a.owner_id}, lambda rows: rows == [(world.a.owner_id, world.a.id)]),
        "user and organization": ({"user": world.a.owner_id, "org": world.a.id},
                                  lambda rows: len(rows) == a_users),
    }
    for label, (context, expected) in contexts.items():
        with app_tx(app_engine, **context) as conn:
            rows = [tuple(r) for r in conn.execute(text(query)).all()]
            assert expected(rows), f"{label}: {rows}"
            assert conn.execute(text("SELECT count(*) FROM users WHERE email = :e"),
                                {"e": world.b.staff_email}).scalar() == 0, label


def test_audit_log_is_append_only_for_the_app_role(world, owner, app_engine):
    before = snapshot(owner, "audit_log", world.a.id)
    for sql in ("UPDATE audit_log SET action = 'tampered'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(DBAPIError) as raised, app_tx(app_engine, org=world.a.id) as conn:
            conn.execute(text(sql))
        assert sqlstate(raised.value) == INSUFFICIENT_PRIVILEGE, sql
        assert "permission denied" in str(raised.value.orig), sql
    with app_tx(app_engine, org=world.a.id) as conn:  # appending is allowed
        conn.execute(text("INSERT INTO audit_log (organization_id, action) VALUES (:o, 'test.appended')"),
                     {"o": world.a.id})
        assert scalar(conn, "SELECT count(*) FROM audit_log WHERE action = 'test.appended'") == 1
    assert snapshot(owner, "audit_log", world.a.id) == before


# ------------------------------------------------------------------------------------------------
# Schema shape: the spec's indexes, the seeded plans, tenant keys
# ------------------------------------------------------------------------------------------------
SPEC_INDEXES = {
    "idx_org_stripe_account": "organizations",
    "idx_org_status_plan": "organizations",
    "idx_venues_org_status": "venues",
    "idx_venues_embed_key": "venues",
    "idx_activities_org_venue_active": "activities",
    "idx_activities_schedule": "activities",
    "idx_sessions_activity_time_capacity": "activity_sessions",
    "idx_sessions_availability": "activity_sessions",
    "idx_sessions_org_date": "activity_sessions",
    "idx_bookings_org_date_status": "bookings",
    "idx_bookings_session": "bookings",
    "idx_bookings_customer": "bookings",
    "idx_bookings_reference": "bookings",
    "idx_customers_org_email": "customers",
    "idx_customers_stripe": "customers",
    "idx_users_org_role": "users",
    "idx_users_platform": "users",
}


def test_the_specs_indexes_exist(owner):
    with owner.connect() as conn:
        found = {r.indexname: r for r in conn.execute(text(
            "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"))}
    missing = sorted(set(SPEC_INDEXES) - set(found))
    assert not missing, f"missing indexes: {missing}"
    for name, table in SPEC_INDEXES.items():
        assert found[name].tablename == table, f"{name} is on {found[name].tablename}, not {table}"
    assert "USING gin" in found["idx_activities_schedule"].indexdef
    assert found["idx_customers_org_email"].indexdef.startswith("CREATE UNIQUE INDEX")
    assert "(organization_id, email)" in found["idx_customers_org_email"].indexdef


def test_plans_are_seeded_and_readable_by_organizations(world, owner, app_engine):
    with owner.connect() as conn:
        slugs = set(conn.execute(text("SELECT slug FROM plans WHERE is_active")).scalars())
    assert {"free", "pro", "enterprise"} <= slugs
    with app_tx(app_engine, org=world.a.id) as conn:
        assert {"free", "pro", "enterprise"} <= set(conn.execute(text("SELECT slug FROM plans")).scalars())
        # ... but only the platform may change them.
        assert conn.execute(text("UPDATE plans SET price_monthly = 0 WHERE slug = 'enterprise' RETURNING id")).all() == []
    _assert_refused_by_rls(app_engine, "INSERT INTO plans (name, slug) VALUES ('Mine', :s)",
                           {"s": uuid.uuid4().hex[:12]}, world.a.id)
    with owner.connect() as conn:
        assert conn.execute(text("SELECT price_monthly FROM plans WHERE slug = 'enterprise'")).scalar() > 0


# Documented departures (README, "Departures from DESIGN.md"): users keeps a one-column primary key
# (platform admins have no organization); organizations is the tenant root; audit_log's
# organization_id is nullable (platform-wide events), so it cannot be part of its primary key;
# daily_stats is a roll-up keyed by what it sums (organization_id, day, venue_id, activity_id, currency).
KEY_EXCEPTIONS = {"users", "organizations", "audit_log", "daily_stats"}
# Foreign keys from a tenant row to a platform admin, who belongs to no organization.
PLATFORM_USER_REFS = {("access_grants", "admin_user_id")}


def test_tenant_keys_include_the_organization(owner):
    with owner.connect() as conn:
        tenant_tables = set(conn.execute(text(
            "SELECT table_name FROM information_schema.columns c JOIN information_schema.tables t USING "
            "(table_schema, table_name) WHERE c.table_schema = 'public' AND c.column_name = 'organization_id' "
            "AND t.table_type = 'BASE TABLE'")).scalars())
        nullable = {r.table_name: r.is_nullable for r in conn.execute(text(
            "SELECT table_name, is_nullable FROM information_schema.columns WHERE table_schema = 'public' "
            "AND column_name = 'organization_id'"))}
        constraints = conn.execute(text("""
            SELECT con.conname, con.contype, src.relname AS tbl, ref.relname AS ref_tbl,
                   ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
                           JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i) AS cols,
                   ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
                           JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) AS ref_cols
              FROM pg_constraint con
              JOIN pg_class src ON src.oid = con.conrelid
              LEFT JOIN pg_class ref ON ref.oid = con.confrelid
             WHERE src.relnamespace = 'public'::regnamespace AND con.contype IN ('p', 'u', 'f')
        """)).all()
        unique_indexes = conn.execute(text("""
            SELECT i.indexrelid::regclass::text AS name, t.relname AS tbl,
                   ARRAY(SELECT a.attname::text FROM unnest(i.indkey) k(n)
                           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n) AS cols
              FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
             WHERE t.relnamespace = 'public'::regnamespace AND i.indisunique
        """)).all()

    assert set(TENANT_TABLES) - {"organizations"} <= tenant_tables
    checked = tenant_tables - KEY_EXCEPTIONS
    assert {"venues", "bookings", "activity_sessions", "slot_reservations"} <= checked
    for table in checked:
        assert nullable[table] == "NO", f"{table}.organization_id is nullable"
        pks = [c for c in constraints if c.tbl == table and c.contype == "p"]
        assert len(pks) == 1, f"{table} has no primary key"
        assert pks[0].cols[0] == "organization_id" and "id" in pks[0].cols, f"{table} primary key is {pks[0].cols}"
    for index in unique_indexes:
        if index.tbl in checked:
            assert "organization_id" in index.cols, f"unique index {index.name} on {index.tbl} omits organization_id"

    tenant_refs = tenant_tables  # rows that belong to one organization, users included
    foreign = [c for c in constraints if c.contype == "f"]
    assert foreign, "no foreign keys found"
    for fk in foreign:
        pairs = dict(zip(fk.cols, fk.ref_cols))
        if (fk.tbl, fk.cols[0]) in PLATFORM_USER_REFS:
            assert fk.ref_tbl == "users" and pairs == {fk.cols[0]: "id"}, f"{fk.conname}: {pairs}"
        elif fk.tbl in tenant_refs and fk.ref_tbl == "organizations":
            assert pairs == {"organization_id": "id"}, f"{fk.conname}: {pairs}"
        elif fk.tbl in tenant_refs and fk.ref_tbl in tenant_refs:
            assert pairs.get("organization_id") == "organization_id", \
                f"{fk.conname} ({fk.tbl} -> {fk.ref_tbl}) does not carry organization_id: {pairs}"
        elif fk.tbl == "organizations" and fk.ref_tbl in tenant_refs:  # the owner: a user of the same organization
            assert pairs.get("id") == "organization_id", f"{fk.conname}: {pairs}"
