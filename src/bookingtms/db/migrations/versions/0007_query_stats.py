"""pg_stat_statements, when the server has it, and the platform admin's view of the top queries.

Revision ID: 0007
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0007_query_stats.sql")


def downgrade() -> None:
    raise NotImplementedError("0007 is forward-only")
