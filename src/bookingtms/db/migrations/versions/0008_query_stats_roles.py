"""The platform admin's view of the top queries leaves out role statements (they carry passwords).

Revision ID: 0008
"""
from bookingtms.db.migrations.run_sql import SQL_DIR, run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0008_query_stats_roles.sql")


def _query_stats_of_0007() -> str:
    """0007's CREATE FUNCTION query_stats(...) ... $$; as written in its SQL file, as CREATE OR REPLACE."""
    sql = (SQL_DIR / "0007_query_stats.sql").read_text()
    start = sql.index("CREATE FUNCTION query_stats(p_limit integer, p_order text)")
    end = sql.index("\n$$;\n", start) + len("\n$$;")
    return "CREATE OR REPLACE " + sql[start + len("CREATE "):end]


def downgrade() -> None:
    from alembic import op

    # Back to 0007's definition (role statements shown again). CREATE OR REPLACE keeps the
    # function's owner and grants, as the upgrade did.
    op.execute(_query_stats_of_0007())
