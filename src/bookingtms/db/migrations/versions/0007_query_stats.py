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
    from alembic import op

    # The functions, with their grants. pg_stat_statements stays: the upgrade only created it IF NOT
    # EXISTS (a DBA or a monitoring tool may have created it before, and nothing records which), and
    # dropping it would take the view away from whatever else reads it.
    op.execute("""
        DROP FUNCTION IF EXISTS job_lag();
        DROP FUNCTION IF EXISTS query_stats(integer, text);
    """)
