"""Every migration can be rolled back: on a scratch database of its own, upgrade to head (with
bookings in it), downgrade to 0004, and the schema is exactly what 0004 left (catalog snapshot);
upgrade to head again and the roll-ups, triggers, functions and indexes of 0005-0014 are back and
`bookingtms doctor` finds nothing wrong. 0008's downgrade puts 0007's query_stats() back, 0010's
0001's venue_by_embed_key(), 0011's 0004's organizations_with_reminders_due() and 0012's 0011's,
0013's 0002's organization_metrics(), 0014's 0005's rebuild_daily_stats()."""

from __future__ import annotations

import os
import re
import uuid

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

from bookingtms.config import Settings
from bookingtms.db.migrate import alembic_config, run_migrations
from bookingtms.db.migrations.run_sql import SQL_DIR
from bookingtms.db.urls import owner_url
from bookingtms.doctor import run_doctor

pytestmark = pytest.mark.xdist_group("migrations")

# What 0005-0009 create, as they name it.
FUNCTIONS_0005_0009 = {
    # 0005
    "daily_stats_booked(text)", "daily_stats_revenue(text,text,bigint,bigint)",
    "daily_stats_cancelled(text,text,text)", "daily_stats_recomputed()", "rebuild_daily_stats(uuid)",
    "daily_stats_booking_changed()", "daily_stats_session_changed()", "daily_stats_venue_zone_changed()",
    # 0006
    "notify_session_availability()",
    # 0007 (0008 redefines query_stats)
    "query_stats(integer,text)", "job_lag()",
    # 0009
    "organization_venues(uuid)", "organization_owner(uuid)",
}
TRIGGERS_0005_0006 = {
    ("bookings", "bookings_daily_stats"), ("bookings", "bookings_daily_stats_update"),
    ("activity_sessions", "activity_sessions_daily_stats"),
    ("activity_sessions", "activity_sessions_daily_stats_update"),
    ("venues", "venues_daily_stats_zone"),
    ("activity_sessions", "activity_sessions_notify"), ("activity_sessions", "activity_sessions_notify_update"),
}
COLUMNS_0009 = {("venues", "image_url"), ("activities", "image_url")}

# Objects of public (not members of an extension: pg_stat_statements may stay, see 0007's downgrade).
NOT_EXTENSION_MEMBER = ("NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass "
                        "AND d.objid = {alias}.oid AND d.deptype = 'e')")
SNAPSHOT_QUERIES = {
    "relations": f"""
        SELECT c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, coalesce(c.relacl::text, '')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND {NOT_EXTENSION_MEMBER.format(catalog='pg_class', alias='c')}""",
    "columns": f"""
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), coalesce(a.attacl::text, '')
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
         WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
           AND {NOT_EXTENSION_MEMBER.format(catalog='pg_class', alias='c')}""",
    "constraints": """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
          FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND NOT t.tgisinternal""",
    "functions": f"""
        SELECT p.oid::regprocedure::text, p.prokind,
               CASE WHEN p.prokind IN ('f', 'p') THEN md5(pg_get_functiondef(p.oid)) END,
               pg_get_userbyid(p.proowner), coalesce(p.proacl::text, '')
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public' AND {NOT_EXTENSION_MEMBER.format(catalog='pg_proc', alias='p')}""",
    "policies": """
        SELECT tablename, policyname, permissive, roles::text, cmd, coalesce(qual, ''), coalesce(with_check, '')
          FROM pg_policies WHERE schemaname = 'public'""",
    "types": f"""
        SELECT t.typname, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = 'public' AND {NOT_EXTENSION_MEMBER.format(catalog='pg_type', alias='t')}
           AND t.typname !~ '^_?pg_stat_statements'""",
    "extensions": "SELECT extname FROM pg_extension WHERE extname <> 'pg_stat_statements'",
}


def snapshot(conn) -> dict[str, set[tuple]]:
    return {name: {tuple(row) for row in conn.execute(text(sql))} for name, sql in SNAPSHOT_QUERIES.items()}


def functions(conn) -> set[str]:
    return set(conn.execute(text(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public'")).scalars())


def triggers(conn) -> set[tuple[str, str]]:
    return {tuple(r) for r in conn.execute(text(
        "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"))}


def columns(conn) -> set[tuple[str, str]]:
    return {tuple(r) for r in conn.execute(text(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"))}


def has_table(conn, name: str) -> bool:
    return conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": f"public.{name}"}).scalar_one()


def version(conn) -> str:
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def function_body(sql_file: str, name: str = "query_stats") -> str:
    """A function's body as the SQL file writes it (what pg_proc.prosrc holds)."""
    sql = (SQL_DIR / sql_file).read_text()
    return re.search(rf"FUNCTION {name}\(.*? AS \$\$(.*?)\$\$;", sql, re.S).group(1)


def function_source(conn, signature: str) -> str:
    return conn.execute(text("SELECT prosrc FROM pg_proc WHERE oid = CAST(:f AS regprocedure)"),
                        {"f": signature}).scalar_one()


def query_stats_state(conn) -> tuple[str, str]:
    return tuple(conn.execute(text(
        "SELECT prosrc, proacl::text FROM pg_proc WHERE oid = 'query_stats(integer, text)'::regprocedure")).one())


@pytest.fixture(scope="module")
def scratch():
    """Settings and an owner engine for a database of this module's own, dropped at the end."""
    server = make_url(os.environ.get("DATABASE_DIRECT_URL") or os.environ["DATABASE_URL"])
    name = f"{server.database}_downgrades"
    admin = create_engine(server.set(drivername="postgresql+psycopg", database="postgres"), poolclass=pool.NullPool,
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    settings = Settings(DATABASE_URL=url, DATABASE_DIRECT_URL=url, DATABASE_READ_URL=None)
    engine = create_engine(owner_url(settings), poolclass=pool.NullPool)
    try:
        yield settings, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def execute_each(conn, statements: str, params: dict) -> None:
    """Statements separated by `;` at line ends, one at a time (bound parameters allow one per call)."""
    for statement in re.split(r";\s*\n", statements):
        if statement.strip():
            conn.execute(text(statement), params)


def seed(conn) -> dict[str, uuid.UUID]:
    """One organization with a venue (Berlin), an activity, two sessions and two bookings: one
    confirmed and paid (4 guests), one cancelled by the customer. Written as the owner, with the
    totals doctor checks (capacity_remaining, the customer's totals) consistent."""
    ids = {k: uuid.uuid4() for k in ("org", "venue", "activity", "s1", "s2", "customer")}
    execute_each(conn, """
        INSERT INTO organizations (id, name, slug, plan_id)
        SELECT :org, 'Downgrade test', 'downgrade-test', id FROM plans WHERE slug = 'free';
        INSERT INTO venues (organization_id, id, name, slug, embed_key, timezone)
        VALUES (:org, :venue, 'Venue', 'venue', 'downgrade-test-embed-key', 'Europe/Berlin');
        INSERT INTO activities (organization_id, id, venue_id, name, duration_minutes, capacity, max_players,
                                price_amount, currency)
        VALUES (:org, :activity, :venue, 'Room', 60, 10, 6, 2500, 'EUR');
        INSERT INTO activity_sessions (organization_id, id, activity_id, venue_id, start_time, end_time,
                                       capacity_total, capacity_remaining, price_at_generation, currency)
        VALUES (:org, :s1, :activity, :venue, '2026-05-01 14:00+00', '2026-05-01 15:00+00', 10, 6, 2500, 'EUR'),
               (:org, :s2, :activity, :venue, '2026-05-02 14:00+00', '2026-05-02 15:00+00', 10, 10, 2500, 'EUR');
        INSERT INTO customers (organization_id, id, email, total_bookings, total_spent)
        VALUES (:org, :customer, 'guest@example.com', 1, 10000);
        INSERT INTO bookings (organization_id, venue_id, activity_id, session_id, customer_id, booking_reference,
                              status, payment_status, booking_date, guest_count, unit_price_amount,
                              subtotal_amount, total_amount, currency, cancelled_at, cancel_reason, cancelled_by)
        VALUES (:org, :venue, :activity, :s1, :customer, 'DG-1', 'confirmed', 'paid', '2026-05-01', 4, 2500,
                10000, 10000, 'EUR', NULL, NULL, NULL),
               (:org, :venue, :activity, :s2, :customer, 'DG-2', 'cancelled', 'unpaid', '2026-05-02', 2, 2500,
                5000, 5000, 'EUR', now(), 'customer request', 'customer');
    """, ids)
    return ids


def stats_rows(conn, org) -> list[tuple]:
    return [tuple(r) for r in conn.execute(text("""
        SELECT day::text, bookings, guests, revenue_amount, cancellations, capacity, occupancy_guests
          FROM daily_stats WHERE organization_id = :org ORDER BY day"""), {"org": org})]


# The seed's roll-ups: day, bookings, guests, revenue, cancellations, capacity, occupancy guests.
EXPECTED_STATS = [("2026-05-01", 1, 4, 10000, 0, 10, 4), ("2026-05-02", 0, 0, 0, 1, 10, 0)]


def assert_head(conn, org) -> None:
    assert version(conn) == "0014"
    assert {("bookings", "bookings_daily_lock"), ("activity_sessions", "activity_sessions_daily_lock_update")
            } <= triggers(conn)
    assert "daily_stats_revenue" in conn.execute(text(
        "SELECT prosrc FROM pg_proc WHERE oid = 'organization_metrics(uuid[])'::regprocedure")).scalar_one()
    assert conn.execute(text("SELECT to_regclass('idx_bookings_reminder_day') IS NOT NULL")).scalar_one()
    assert "bookings_due_reminder(timestamp with time zone,timestamp with time zone)" in functions(conn)
    assert embed_lookup_columns(conn) == ["organization_id", "venue_id", "organization_status", "timezone"]
    assert has_table(conn, "daily_stats")
    assert FUNCTIONS_0005_0009 <= functions(conn), FUNCTIONS_0005_0009 - functions(conn)
    assert TRIGGERS_0005_0006 <= triggers(conn), TRIGGERS_0005_0006 - triggers(conn)
    assert COLUMNS_0009 <= columns(conn)
    assert conn.execute(text("SELECT relrowsecurity AND relforcerowsecurity FROM pg_class "
                             "WHERE oid = 'daily_stats'::regclass")).scalar_one()
    assert conn.execute(text("SELECT count(*) FROM pg_policies WHERE tablename = 'daily_stats' "
                             "AND policyname = 'tenant_read'")).scalar_one() == 1
    assert conn.execute(text("SELECT has_table_privilege('bookingtms_app', 'daily_stats', 'SELECT')")).scalar_one()
    prosrc, acl = query_stats_state(conn)
    assert prosrc == function_body("0008_query_stats_roles.sql")
    assert "bookingtms_app=X/" in acl
    # 0005's upgrade built the roll-ups of the bookings already there.
    assert stats_rows(conn, org) == EXPECTED_STATS


def embed_lookup_columns(conn) -> list[str]:
    return conn.execute(text("SELECT proargnames[2:] FROM pg_proc WHERE proname = 'venue_by_embed_key'")).scalar_one()


def assert_doctor_ok(settings) -> None:
    lines: list[str] = []
    assert run_doctor(settings, echo=lines.append) == 0, "\n".join(lines)
    assert lines[-1].endswith(": OK"), lines


def test_downgrade_to_0004_and_back(scratch):
    settings, engine = scratch
    cfg = alembic_config(settings)

    # What 0004 leaves, on a database that never saw 0005-0009.
    command.upgrade(cfg, "0004")
    with engine.begin() as conn:
        assert version(conn) == "0004"
        at_0004 = snapshot(conn)
        ids = seed(conn)

    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert_head(conn, ids["org"])
    assert_doctor_ok(settings)

    # 0014-0012 down: 0005's rebuild_daily_stats(), 0002's organization_metrics() and 0011's
    # organizations_with_reminders_due() again, word for word, and nothing of theirs left.
    command.downgrade(cfg, "0011")
    with engine.connect() as conn:
        assert version(conn) == "0011"
        for signature, sql_file in (("rebuild_daily_stats(uuid)", "0005_stats.sql"),
                                    ("organization_metrics(uuid[])", "0002_identity.sql"),
                                    ("organizations_with_reminders_due(timestamptz, timestamptz, integer)",
                                     "0011_reminder_lookup.sql")):
            assert function_source(conn, signature) == function_body(sql_file, signature.split("(")[0]), signature
        assert not {"bookings_due_reminder(timestamp with time zone,timestamp with time zone)", "daily_stats_writing()",
                    "daily_stats_lock_key(uuid)"} & functions(conn)
        assert not {t for t in triggers(conn) if t[1].endswith(("daily_lock", "daily_lock_update"))}
    command.upgrade(cfg, "head")

    # 0008 down: 0007's query_stats() again (role statements no longer filtered), grants kept.
    command.downgrade(cfg, "0007")
    with engine.connect() as conn:
        assert version(conn) == "0007"
        prosrc, acl = query_stats_state(conn)
        assert prosrc == function_body("0007_query_stats.sql")
        assert "(alter|create)" not in prosrc
        assert "bookingtms_app=X/" in acl

    command.downgrade(cfg, "0004")
    with engine.connect() as conn:
        assert version(conn) == "0004"
        assert not has_table(conn, "daily_stats")
        assert not FUNCTIONS_0005_0009 & functions(conn), FUNCTIONS_0005_0009 & functions(conn)
        assert not TRIGGERS_0005_0006 & triggers(conn), TRIGGERS_0005_0006 & triggers(conn)
        assert not COLUMNS_0009 & columns(conn)
        # Exactly 0004's schema: nothing of 0005-0009 left, nothing of 0001-0004 lost.
        after = snapshot(conn)
        for kind in SNAPSHOT_QUERIES:
            assert after[kind] == at_0004[kind], (kind, "left over:", after[kind] - at_0004[kind],
                                                  "missing:", at_0004[kind] - after[kind])
        # The data of 0001-0004 is untouched.
        assert conn.execute(text("SELECT count(*) FROM bookings WHERE organization_id = :o"),
                            {"o": ids["org"]}).scalar_one() == 2

    # Up again the way `bookingtms migrate` does it.
    run_migrations(settings)
    with engine.connect() as conn:
        assert_head(conn, ids["org"])
    assert_doctor_ok(settings)

    # The triggers work again: cancelling the confirmed booking (and giving its spots back) moves
    # the roll-ups, and the capacity change is announced on session_availability.
    listener = psycopg.connect(owner_url(settings).set(drivername="postgresql").render_as_string(hide_password=False),
                               autocommit=True)
    try:
        listener.execute("LISTEN session_availability")
        with engine.begin() as conn:
            execute_each(conn, """
                UPDATE bookings SET status = 'cancelled', cancelled_at = now(), cancel_reason = 'customer request',
                                    cancelled_by = 'customer', payment_status = 'refunded', refund_amount = 10000
                 WHERE organization_id = :org AND booking_reference = 'DG-1';
                UPDATE activity_sessions SET capacity_remaining = 10 WHERE organization_id = :org AND id = :s1;
                UPDATE customers SET total_bookings = 0, total_spent = 0
                 WHERE organization_id = :org AND id = :customer;
            """, ids)
        notes = list(listener.notifies(timeout=5, stop_after=1))
    finally:
        listener.close()
    assert len(notes) == 1 and str(ids["s1"]) in notes[0].payload
    with engine.connect() as conn:
        assert stats_rows(conn, ids["org"]) == [("2026-05-01", 0, 0, 0, 1, 10, 0), ("2026-05-02", 0, 0, 0, 1, 10, 0)]
    assert_doctor_ok(settings)
