"""Issue 5, item 9: every hot query, explained on generated data, uses an index on the large
tables. `bookingtms bench plans` drives the hot endpoints in process against a `ci` data set
(20 organizations, 24,000 bookings), records each statement with its parameters and its
row-level-security context, and EXPLAINs it under that context."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

LARGE = 5_000  # rows; the ci data set has more than this in bookings, payments, customers and sessions


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A database of its own, seeded with the ci profile (straight to the server, never through a pooler)."""
    server = make_url(os.environ.get("DATABASE_DIRECT_URL") or os.environ["DATABASE_URL"])
    name = f"{server.database}_plans"
    admin = create_engine(server.set(drivername="postgresql+psycopg", database="postgres"), poolclass=pool.NullPool,
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    data_dir = tmp_path_factory.mktemp("plans")
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_DIRECT_URL", "DATABASE_READ_URL", "BOOKINGTMS_DB_PREPARED_STATEMENTS")}
    env.update(DATABASE_URL=server.set(database=name).render_as_string(hide_password=False),
               BOOKINGTMS_DATA_DIR=str(data_dir))
    seed = subprocess.run([sys.executable, "-m", "bookingtms.cli", "bench", "seed", "--profile", "ci"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert seed.returncode == 0, seed.stdout[-3000:] + seed.stderr[-3000:]
    yield env, data_dir
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def plans(env, out, min_rows: int) -> tuple[int, str]:
    run = subprocess.run([sys.executable, "-m", "bookingtms.cli", "bench", "plans", "--min-rows", str(min_rows),
                          "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    report = (out / "plans-latest.md").read_text() if (out / "plans-latest.md").exists() else run.stderr[-3000:]
    return run.returncode, report


def test_no_hot_query_scans_a_large_table(seeded):
    env, data_dir = seeded
    code, report = plans(env, data_dir / "large", LARGE)
    assert code == 0, report
    assert "**PASS**" in report and "SEQ SCAN" not in report
    # The check saw the real workload: the big tables, and the booking flow's and dashboard's statements.
    for table in ("bookings", "activity_sessions", "customers", "payments"):
        assert table in report.split("rows: ", 1)[1].split("\n", 1)[0], f"{table} is not among the large tables"
    for statement in ("UPDATE activity_sessions", "daily_stats.day", "venue_by_embed_key"):
        assert statement in report, f"no statement with {statement!r} was explained"
    assert " on bookings |" in report or " on bookings;" in report, "no statement reading bookings was explained"
    assert "not explained" not in report, report
    assert ": 5" not in report.split("Requests driven", 1)[1], "a hot endpoint answered 5xx"


def test_the_check_fails_on_a_sequential_scan(seeded):
    """With every table counted as large, the small ones (read whole on purpose) are flagged: the
    check is not blind."""
    env, data_dir = seeded
    code, report = plans(env, data_dir / "all", 1)
    assert code == 1
    assert "**FAIL**" in report and "SEQ SCAN: " in report
