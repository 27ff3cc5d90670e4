"""Dashboard statistics roll-ups kept in the booking transaction; pg_stat_statements when available.

Revision ID: 0005
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0005_stats.sql")


def downgrade() -> None:
    raise NotImplementedError("0005 is forward-only")
