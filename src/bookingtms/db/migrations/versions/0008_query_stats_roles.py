"""The platform admin's view of the top queries leaves out role statements (they carry passwords).

Revision ID: 0008
"""
from bookingtms.db.migrations.run_sql import run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0008_query_stats_roles.sql")


def downgrade() -> None:
    raise NotImplementedError("0008 is forward-only")
